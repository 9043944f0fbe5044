// Command noop is the ceiling floodgate is measured against: an HTTP server
// that reads a donation's body and answers 202, and does nothing else. No
// accept path can be faster on the same machine with the same HTTP stack
// and the same load generator.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"

	"github.com/floodgate/floodgate/bench/internal/benchsrv"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18401", "listen address")
	flag.Parse()
	s := benchsrv.New()
	s.HandleDonation(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 16<<10)); err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		s.Accepted()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"id":"don_noop","status":"accepted"}`+"\n")
	})
	log.Fatal(s.ListenAndServe(*addr))
}
