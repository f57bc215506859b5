// Command holdconns opens N connections to a Redis endpoint (directly or
// through a proxy), sends one inline PING on each so a proxy really dials
// its upstream, prints "READY opened=N failed=M", holds them until SIGTERM
// or -hold, closes them and exits. bench/bench.sh uses it to measure the
// memory a proxy spends per idle connection.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:16379", "Redis endpoint, `HOST:PORT`")
	n := flag.Int("n", 2000, "connections to open")
	par := flag.Int("parallel", 50, "connections opened at once")
	hold := flag.Duration("hold", 60*time.Second, "longest time to hold them")
	timeout := flag.Duration("timeout", 10*time.Second, "per-connection dial and PING timeout")
	flag.Parse()

	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	sem := make(chan struct{}, *par)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := ping(*addr, *timeout)
			if err != nil {
				if failed.Add(1) == 1 {
					fmt.Fprintln(os.Stderr, "holdconns:", err)
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	fmt.Printf("READY opened=%d failed=%d\n", int64(*n)-failed.Load(), failed.Load())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func ping(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		c.Close()
		return nil, fmt.Errorf("ping %s: reply %q: %v", addr, line, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
