package lab

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Browser is a headless Chromium running in a host's namespace, driven
// over the DevTools protocol on a pipe (--remote-debugging-pipe: commands
// on its fd 3, answers on its fd 4, NUL-terminated JSON), so no debugging
// port is opened and the page sees the host's network, loopback included.
type Browser struct {
	host    *Host
	proc    *Proc
	toB     *os.File // our end of the browser's fd 3
	fromB   *os.File // our end of the browser's fd 4
	session string   // the page target's session

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpReply // guarded by mu; closed when the browser's output ends
	dead    bool                  // guarded by mu
	done    chan struct{}         // closed when the reader ends
}

type cdpReply struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StartBrowser starts Chromium headless in the host with a fresh profile
// and opens one page of width x height pixels. It skips the test when
// Debian's chromium is not installed. The browser is closed when the test
// ends.
func (h *Host) StartBrowser(width, height int) *Browser {
	l := h.lab
	l.t.Helper()
	Need(l.t, "Debian package chromium", "chromium")
	profile := filepath.Join(h.Dir, "chromium-profile")
	r3, w3, err := os.Pipe()
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	r4, w4, err := os.Pipe()
	if err != nil {
		l.t.Fatalf("lab: %v", err)
	}
	b := &Browser{host: h, toB: w3, fromB: r4, pending: map[int]chan cdpReply{}, done: make(chan struct{})}
	b.proc = h.startWith("chromium", []*os.File{r3, w4}, "chromium", "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir="+profile, "--remote-debugging-pipe", "about:blank")
	r3.Close()
	w4.Close()
	go b.read()
	l.t.Cleanup(b.close)

	var target struct{ TargetID string }
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		l.t.Fatalf("lab: chromium on %s: %v\n%s", h.Name, err, tail(b.proc.Log(), 20))
	}
	var att struct{ SessionID string }
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		l.t.Fatalf("lab: chromium on %s: %v", h.Name, err)
	}
	b.session = att.SessionID
	if err := b.call(b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		l.t.Fatalf("lab: chromium on %s: %v", h.Name, err)
	}
	return b
}

// read delivers the browser's answers to their callers; events are
// dropped.
func (b *Browser) read() {
	defer close(b.done)
	rd := bufio.NewReader(b.fromB)
	for {
		msg, err := rd.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.dead = true
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var r cdpReply
		if json.Unmarshal(msg[:len(msg)-1], &r) != nil || r.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[r.ID]
		delete(b.pending, r.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// call sends one DevTools command and decodes its result into v (if not
// nil), within 30 s.
func (b *Browser) call(session, method string, params any, v any) error {
	b.mu.Lock()
	if b.dead {
		b.mu.Unlock()
		return fmt.Errorf("lab: chromium %s: the browser is gone", method)
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	req := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		req["sessionId"] = session
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := b.toB.Write(append(msg, 0)); err != nil {
		return fmt.Errorf("lab: chromium %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("lab: chromium %s: the browser is gone", method)
		}
		if r.Error != nil {
			return fmt.Errorf("lab: chromium %s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if v != nil {
			return json.Unmarshal(r.Result, v)
		}
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("lab: chromium %s: no answer in 30s", method)
	}
}

// Navigate loads url in the page and returns once it has loaded (the
// load event), or the error Chromium gave.
func (b *Browser) Navigate(url string) error {
	var nav struct{ ErrorText string }
	if err := b.call(b.session, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return err
	}
	if nav.ErrorText != "" {
		return fmt.Errorf("lab: chromium navigate %s: %s", url, nav.ErrorText)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var state string
		if err := b.Eval("document.readyState", &state); err == nil && state == "complete" {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // polling the page, not synchronising goroutines
	}
	return fmt.Errorf("lab: chromium navigate %s: not loaded within 15s", url)
}

// Eval evaluates a JavaScript expression in the page (a promise is
// awaited) and decodes its JSON value into v.
func (b *Browser) Eval(expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if d := res.ExceptionDetails; d != nil {
		msg := d.Text
		if d.Exception != nil {
			msg = d.Exception.Description
		}
		return fmt.Errorf("lab: chromium eval %q: %s", expr, msg)
	}
	if v == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, v)
}

// Screenshot saves a PNG of the page's viewport to path.
func (b *Browser) Screenshot(path string) error {
	var shot struct{ Data string }
	if err := b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return fmt.Errorf("lab: screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// close asks the browser to quit, then kills its process group (the
// renderer and zygote processes with it).
func (b *Browser) close() {
	_ = b.call("", "Browser.close", map[string]any{}, nil)
	select {
	case <-b.proc.done:
	case <-time.After(5 * time.Second):
	}
	killGroup(b.proc.Pid())
	b.toB.Close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
	}
	b.fromB.Close()
	if _, err := b.proc.Wait(5 * time.Second); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.host.lab.t.Logf("lab: chromium on %s: %v", b.host.Name, err)
	}
}
