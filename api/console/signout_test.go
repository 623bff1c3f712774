package console

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap/zaptest"
)

// Two query nodes sharing sign-outs through KYC_SIGNOUTS (a real embedded server): a
// session signed out on one is refused by the other. With the store down, sessions are
// judged by each node's own sign-outs: still accepted elsewhere, refused where signed out.
func TestSignOutSharedAcrossNodes(t *testing.T) {
	srv := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shared, err := eventlog.OpenSignOuts(ctx, srv.EventLog(t, eventlog.Config{}, zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	node := func() *harness {
		return newHarnessWith(t, func(c *Config) { c.SessionKey, c.SignOuts, c.Now = key, shared, time.Now })
	}
	a, b := node(), node()
	s := a.signIn(t, readerTok)
	if rec := b.do("GET", "/console/", nil, s); rec.Code != http.StatusOK {
		t.Fatalf("the other node before sign-out: %d, want 200", rec.Code)
	}
	if rec := a.do("POST", "/console/signout", url.Values{"csrf": {a.csrfOf(t, s)}}, s); rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", rec.Code)
	}
	if rec := b.do("GET", "/console/", nil, s); rec.Code != http.StatusSeeOther {
		t.Fatalf("the other node after sign-out: %d, want 303 to sign-in", rec.Code)
	}

	s2 := a.signIn(t, auditorTok)
	srv.Close()
	if rec := b.do("GET", "/console/", nil, s2); rec.Code != http.StatusOK {
		t.Fatalf("store down, a session never signed out: %d, want 200", rec.Code)
	}
	if rec := a.do("POST", "/console/signout", url.Values{"csrf": {a.csrfOf(t, s2)}}, s2); rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-out with the store down: %d", rec.Code)
	}
	if rec := a.do("GET", "/console/", nil, s2); rec.Code != http.StatusSeeOther {
		t.Fatalf("store down, the node that signed out: %d, want 303", rec.Code)
	}
}
