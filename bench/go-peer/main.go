// The Go net/http peer of lameduck's benchmarks: GET / and GET /sleep?ms=N,
// as the demo server serves them, and Server.Shutdown on SIGTERM/SIGINT.
//
//	go-peer [-listen ADDR] [-grace DURATION]
//
// The first stdout line is "listening on ADDR pid=PID" (the demo's format).
// When Shutdown returns it writes "go-peer: done: ..." on stderr, then exits:
// 0 after a clean drain, 1 when the grace expired first.
//
// Standard library only (Go 1.19, as Debian's golang-go ships it).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const maxMs = 3600000

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "TCP address to serve (port 0 picks a free port)")
	grace := flag.Duration("grace", 30*time.Second, "Shutdown's deadline")
	flag.Parse()

	pid := strconv.Itoa(os.Getpid())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		if r.URL.Path != "/" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", pid)
		ms, err := strconv.ParseUint(r.URL.Query().Get("ms"), 10, 64)
		if err != nil || ms > maxMs {
			http.Error(w, "ms must be a whole number from 0 to 3600000", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "slept %d", ms)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-peer: cannot listen on %s: %v\n", *listen, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// os.Stdout is unbuffered: the line is out when Printf returns.
	fmt.Printf("listening on %s pid=%s\n", ln.Addr(), pid)

	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "go-peer: serve failed: %v\n", err)
		os.Exit(1)
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "go-peer: %v: shutting down\n", sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	err = srv.Shutdown(ctx)
	fmt.Fprintf(os.Stderr, "go-peer: done: shutdown returned %v\n", err)
	if err != nil {
		os.Exit(1)
	}
}
