// Command jm-probe is the one program in the node tests' image, so the image needs no base:
//
//	jm-probe serve [-listen :8080] [-message TEXT]   HTTP: / answers TEXT and the host name,
//	                                                 /healthz 200, /unhealthy 500
//	jm-probe fetch URL                               GET URL (a few tries, for DNS and
//	                                                 endpoints to settle); the body goes to
//	                                                 stdout and the termination message.
//	                                                 HTTPS trusts the pod's service-account
//	                                                 CA, so the API server can be fetched
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	terminationLog   = "/dev/termination-log"
	serviceAccountCA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: jm-probe serve|fetch ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "fetch":
		err = fetch(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jm-probe:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	flags := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := flags.String("listen", ":8080", "address to listen on")
	message := flags.String("message", "jm-probe", "text that / answers")
	if err := flags.Parse(args); err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s from %s\n", *message, hostname)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/unhealthy", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unhealthy on purpose", http.StatusInternalServerError)
	})
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stopped := make(chan os.Signal, 1)
	signal.Notify(stopped, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stopped
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	if err := server.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func fetch(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: jm-probe fetch URL")
	}
	client := &http.Client{Timeout: 3 * time.Second}
	if pem, err := os.ReadFile(serviceAccountCA); err == nil {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		body, err := get(client, args[0])
		if err == nil {
			os.Stdout.Write(body)
			// The kubelet copies this file into the pod's status: the test reads it there.
			return os.WriteFile(terminationLog, body, 0o644)
		}
		lastErr = err
		fmt.Fprintln(os.Stderr, "jm-probe: attempt", attempt+1, "failed:", err)
	}
	return lastErr
}

func get(client *http.Client, url string) ([]byte, error) {
	response, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return nil, err
	}
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, response.StatusCode)
	}
	return body, nil
}
