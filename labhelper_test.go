package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ambassador-mesh/ambassador/mesh"
	"github.com/miekg/dns"
)

// The lab runs this test binary inside host namespaces as a small traffic
// tool (AMB_LAB_HELPER=mode), so that lab traffic is produced and checked by
// code we control rather than by parsing other tools' output.
//
//	serve-sha ADDR              per connection: read to EOF, reply with the sha256 of what came, close
//	serve-blob ADDR SIZE SEED   per connection: send SIZE pseudo-random bytes, half-close, read to EOF
//	upload ADDR SIZE SEED       send SIZE bytes, half-close, print "sent=<sha> reply=<reply>"
//	upload-ref SIZE SEED        print the sha256 of what upload or serve-blob would send
//	download ADDR               read to EOF, print "got=<sha> bytes=<n>"
//	mdns-legacy NAME            send a PTR query to 224.0.0.251:5353 from a random port, print each
//	                            answer whose ID and question match, with its source
//	ping-loop ADDR MS COUNT     every MS milliseconds open a new connection, send a Redis PING and
//	                            expect +PONG; print "ok=N failed=M" and each failure
//	wait-nodes SERVICE N SECS   poll the local status API every 20 ms until SERVICE is offered by
//	                            exactly N nodes; print "after=<ms> at=<unix ms>"
//	serve-name ADDR NAME        per connection: send NAME, close
//	count-names ADDR N          N connections one after another; print "NAME=count ..." sorted
//	raw-handoff ADDR SERVICE    speak the plaintext handoff to a data port as a stranger would;
//	                            print "got N bytes: <quoted>" of what came back within 3 s; a
//	                            data port that does not accept the connection is an error
//	serve-name-hold ADDR NAME   per connection: send NAME and a newline, keep it open until EOF
//	hold-names ADDR SERVICE N   open N connections to ADDR one after another, each held open, and
//	                            print "held: NAME=count ..."; close those of the first name, wait
//	                            until the local node counts them closed, open as many again and
//	                            print "refill: NAME=count ..."
//	serve-bearer ADDR TOKEN     HTTP: 200 "welcome" with "Authorization: Bearer TOKEN", else 401
//	send ADDR TEXT              send TEXT, half-close, read to EOF
//	dial ADDR                   print "ok", "refused" or "error: ..." for one connect (2 s timeout)
func labHelper(mode string, args []string) int {
	var err error
	switch mode {
	case "serve-sha":
		err = serve(args[0], func(c *net.TCPConn) error {
			h := sha256.New()
			if _, err := io.Copy(h, c); err != nil {
				return err
			}
			_, err := io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
			return err
		})
	case "serve-blob":
		size, seed := atoi(args[1]), atoi(args[2])
		err = serve(args[0], func(c *net.TCPConn) error {
			if _, err := io.Copy(c, blob(size, seed)); err != nil {
				return err
			}
			if err := c.CloseWrite(); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, c)
			return err
		})
	case "upload":
		var c net.Conn
		if c, err = net.DialTimeout("tcp", args[0], 5*time.Second); err == nil {
			h := sha256.New()
			if _, err = io.Copy(io.MultiWriter(c, h), blob(atoi(args[1]), atoi(args[2]))); err == nil {
				if err = c.(*net.TCPConn).CloseWrite(); err == nil {
					var reply []byte
					if reply, err = io.ReadAll(c); err == nil {
						fmt.Printf("sent=%x reply=%s\n", h.Sum(nil), reply)
					}
				}
			}
			c.Close()
		}
	case "upload-ref":
		h := sha256.New()
		if _, err = io.Copy(h, blob(atoi(args[0]), atoi(args[1]))); err == nil {
			fmt.Printf("%x\n", h.Sum(nil))
		}
	case "download":
		var c net.Conn
		if c, err = net.DialTimeout("tcp", args[0], 5*time.Second); err == nil {
			h := sha256.New()
			var n int64
			if n, err = io.Copy(h, c); err == nil {
				fmt.Printf("got=%x bytes=%d\n", h.Sum(nil), n)
			}
			c.Close()
		}
	case "mdns-legacy":
		err = legacyQuery(args[0])
	case "ping-loop":
		err = pingLoop(args[0], atoi(args[1]), atoi(args[2]))
	case "wait-nodes":
		err = waitNodes(args[0], atoi(args[1]), atoi(args[2]))
	case "serve-name":
		err = serve(args[0], func(c *net.TCPConn) error {
			_, err := io.WriteString(c, args[1])
			return err
		})
	case "count-names":
		err = countNames(args[0], atoi(args[1]))
	case "serve-name-hold":
		err = serve(args[0], func(c *net.TCPConn) error {
			if _, err := io.WriteString(c, args[1]+"\n"); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, c)
			return err
		})
	case "hold-names":
		err = holdNames(args[0], args[1], atoi(args[2]))
	case "raw-handoff":
		err = rawHandoff(args[0], args[1])
	case "serve-bearer":
		err = serveBearer(args[0], args[1])
	case "send":
		var c net.Conn
		if c, err = net.DialTimeout("tcp", args[0], 5*time.Second); err == nil {
			if _, err = io.WriteString(c, args[1]); err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
				_, err = io.Copy(io.Discard, c)
			}
			c.Close()
		}
	case "dial":
		c, derr := net.DialTimeout("tcp", args[0], 2*time.Second)
		switch {
		case derr == nil:
			c.Close()
			fmt.Println("ok")
		case errors.Is(derr, syscall.ECONNREFUSED):
			fmt.Println("refused")
		default:
			fmt.Println("error:", derr)
		}
	case "first-ok", "reach": // the scale lab's, lab_scale_test.go
		err = scaleHelper(mode, args)
	default:
		if h, ok := streamHelpers[mode]; ok {
			err = h(args)
			break
		}
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab helper:", err)
		return 1
	}
	return 0
}

func serve(addr string, handle func(*net.TCPConn) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if err := handle(c.(*net.TCPConn)); err != nil {
				fmt.Fprintln(os.Stderr, "lab helper: conn:", err)
			}
		}()
	}
}

// blob is a reader of size deterministic pseudo-random bytes.
func blob(size, seed int) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), int64(size))
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// legacyQuery sends what `dig -p 5353 @224.0.0.251 NAME PTR` sends and
// prints the PTR answers of replies that keep the query's ID and question.
func legacyQuery(name string) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return err
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypePTR)
	q.Id = 0x4242
	b, err := q.Pack()
	if err != nil {
		return err
	}
	if _, err := c.WriteToUDP(b, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9000)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return nil // deadline: done listening
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || m.Id != q.Id || len(m.Question) != 1 || m.Question[0] != q.Question[0] {
			fmt.Printf("bad reply from %s\n", from)
			continue
		}
		for _, rr := range m.Answer {
			if ptr, ok := rr.(*dns.PTR); ok {
				fmt.Printf("PTR from %s %s ttl=%d\n", from, ptr.Ptr, ptr.Hdr.Ttl)
			}
		}
	}
}

func pingLoop(addr string, ms, count int) error {
	ok, failed := 0, 0
	t := time.NewTicker(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	for i := 0; i < count; i++ {
		if err := ping(addr); err != nil {
			failed++
			fmt.Printf("fail %s %v\n", time.Now().Format("15:04:05.000"), err)
		} else {
			ok++
		}
		<-t.C
	}
	fmt.Printf("ok=%d failed=%d\n", ok, failed)
	return nil
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "+PONG\r\n" {
		return fmt.Errorf("got %q", buf)
	}
	return nil
}

func waitNodes(service string, n, secs int) error {
	start := time.Now()
	got, state := 0, "none"
	for time.Since(start) < time.Duration(secs)*time.Second {
		var s mesh.Services
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := mesh.Fetch(ctx, "127.0.0.1:7948", "/v1/services", &s)
		cancel()
		if err == nil {
			// Listed is not yet usable: the listener follows the catalog
			// after the reconcile's debounce, and a client that connects
			// in between is refused. Wait for both.
			got, state = 0, "none"
			for _, v := range s.Services {
				if v.Name == service {
					got, state = len(v.Nodes), v.State
				}
			}
			if got == n && (n == 0 || state == "listening" || state == "local") {
				fmt.Printf("after=%d at=%d\n", time.Since(start).Milliseconds(), time.Now().UnixMilli())
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not on %d nodes with its listener up after %ds (last: %d nodes, listener %s)", service, n, secs, got, state)
}

func countNames(addr string, n int) error {
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			return err
		}
		counts[string(b)]++
	}
	var out []string
	for k, v := range counts {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	fmt.Println(strings.Join(out, " "))
	return nil
}

// rawHandoff fails when the data port does not accept the connection: a
// stranger who gets nothing from a port that is down proves nothing. Once
// connected, a write or read cut short by the node is the node refusing,
// and what came back until then is printed.
func rawHandoff(addr, service string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return fmt.Errorf("raw handoff: the data port does not accept connections: %w", err)
	}
	defer c.Close()
	hdr := append([]byte("AMB\x01"), byte(len(service)))
	hdr = append(hdr, service...)
	var note string
	if _, err := c.Write(append(hdr, "PING\r\n"...)); err != nil {
		note = fmt.Sprintf(" (write: %v)", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(io.LimitReader(c, 1<<16))
	fmt.Printf("got %d bytes: %q%s\n", len(b), b, note)
	return nil
}

// holdNames shows least-conn at work: every connection stays open, so
// each pick sees the others' counts. Three instances get an exact third
// each; once the first name's connections close, every new one goes to
// it. random (or round-robin, in the second step) would not do that.
func holdNames(addr, service string, n int) error {
	type held struct {
		c    net.Conn
		name string
	}
	var conns []held
	defer func() {
		for _, h := range conns {
			h.c.Close()
		}
	}()
	open := func() (string, error) {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var name string
		if _, err := fmt.Fscanln(c, &name); err != nil {
			c.Close()
			return "", fmt.Errorf("read name: %w", err)
		}
		_ = c.SetReadDeadline(time.Time{})
		conns = append(conns, held{c, name})
		return name, nil
	}
	count := func(names []string) string {
		m := map[string]int{}
		for _, n := range names {
			m[n]++
		}
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	var names []string
	for range n {
		name, err := open()
		if err != nil {
			return err
		}
		names = append(names, name)
	}
	fmt.Println("held:", count(names))
	first := slices.Min(names)
	kept := conns[:0]
	closed := 0
	for _, h := range conns {
		if h.name == first {
			h.c.Close()
			closed++
			continue
		}
		kept = append(kept, h)
	}
	conns = kept
	// The close reaches the node a moment later: wait until its count of
	// open connections to the instances says so.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var s mesh.Services
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := mesh.Fetch(ctx, "127.0.0.1:7948", "/v1/services", &s)
		cancel()
		active := -1
		if err == nil {
			for _, v := range s.Services {
				if v.Name == service {
					active = 0
					for _, in := range v.Instances {
						active += int(in.Active)
					}
				}
			}
		}
		if active == len(conns) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node still counts %d open connections to %s, want %d (last error %v)", active, service, len(conns), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	names = nil
	for range closed {
		name, err := open()
		if err != nil {
			return err
		}
		names = append(names, name)
	}
	fmt.Println("refill:", count(names))
	return nil
}

func serveBearer(addr, token string) error {
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "welcome")
	}))
}
