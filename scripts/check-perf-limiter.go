// How fast can `etcdctl check perf` ask on this machine? Its puts come from one goroutine that
// waits on a rate limiter (golang.org/x/time/rate, burst 1, 8,000/s for --load=l) before each
// put. This program does the same waits with the same arithmetic (written here, standard library
// only) and counts the puts it could have sent, with no server at all or against a TCP echo
// server that answers at once, so the figure is the limiter's and the Go runtime's alone.
//
//	apt-get install golang-go      # Debian's Go 1.19, the one etcdctl 3.4.23 is built with
//	go run scripts/check-perf-limiter.go                     # no server
//	go run scripts/check-perf-limiter.go -echo -conns 500    # 500 connections to an echo server
//
// Why it matters: with burst 1 the limiter keeps no credit, so a wait that oversleeps loses the
// puts that fell due meanwhile. Go 1.19 rounds a sub-millisecond wait up to 1 ms when its
// runtime has nothing else to do (the idle poller sleeps in whole milliseconds), so the rate
// etcdctl reaches follows how often other goroutines wake its runtime, not the server's speed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limiter: a token bucket of size 1 refilled at `rate` per second; a caller takes one token and
// waits, on a timer, for the time the bucket needs to pay it back.
type limiter struct {
	rate   float64
	last   time.Time
	tokens float64
}

func (l *limiter) wait(ctx context.Context) error {
	now := time.Now()
	tokens := l.tokens + now.Sub(l.last).Seconds()*l.rate
	if tokens > 1 {
		tokens = 1 // burst 1: credit beyond one token is lost
	}
	tokens--
	l.last, l.tokens = now, tokens
	if tokens >= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(-tokens / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// echoServer answers every 1,300-byte message (about a check-perf put) with itself.
func echoServer() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				buf := make([]byte, 1300)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

func main() {
	rate := flag.Float64("rate", 8000, "puts per second asked of the limiter (check perf --load=l: 8000)")
	duration := flag.Duration("duration", 10*time.Second, "how long to ask")
	echo := flag.Bool("echo", false, "send each put to an in-process TCP echo server and wait for the answer")
	conns := flag.Int("conns", 500, "connections (and workers) with -echo (check perf --load=l: 500 clients)")
	flag.Parse()

	requests := make(chan struct{}, *conns)
	var done int64
	var workers sync.WaitGroup
	if *echo {
		addr := echoServer()
		for i := 0; i < *conns; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				panic(err)
			}
			workers.Add(1)
			go func(c net.Conn) {
				defer workers.Done()
				buf := make([]byte, 1300)
				for range requests {
					if _, err := c.Write(buf); err != nil {
						panic(err)
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						panic(err)
					}
					atomic.AddInt64(&done, 1)
				}
			}(c)
		}
	} else {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for range requests {
				atomic.AddInt64(&done, 1)
			}
		}()
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	l := &limiter{rate: *rate, last: time.Now()}
	start := time.Now()
	for l.wait(ctx) == nil {
		requests <- struct{}{}
	}
	close(requests)
	workers.Wait()
	got := float64(done) / time.Since(start).Seconds()
	fmt.Printf("asked %.0f/s, got %.0f/s (%.0f%%); check perf --load=l passes from 90%%\n", *rate, got, 100*got / *rate)
}
