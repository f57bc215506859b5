package mesh

import (
	_ "embed"
	"net/http"
)

// page is the live page at / of the status API: one self-contained HTML
// file (inline CSS and JavaScript, nothing from the internet) that reads
// /v1/members, /v1/services and /v1/connections and follows /v1/events.
//
//go:embed ui/index.html
var page []byte

func servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Only this page's own inline code, and only this origin to talk to.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "+
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	_, _ = w.Write(page)
}
