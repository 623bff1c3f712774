package eventlog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// A sign-out recorded through one node's SignOuts is seen through another's (the same
// stream), until the session would have expired; ids that are not subject tokens are
// refused to record and never signed out. The stream reads from its leader only.
func TestSignOutsShared(t *testing.T) {
	l := startLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := OpenSignOuts(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenSignOuts(ctx, l) // a second node opens the same stream
	if err != nil {
		t.Fatal(err)
	}
	if cfg := b.stream.CachedInfo().Config; cfg.AllowDirect || cfg.MaxAge != SignOutMaxAge || cfg.MaxMsgsPerSubject != 1 {
		t.Fatalf("KYC_SIGNOUTS: direct %v, max age %s, per subject %d", cfg.AllowDirect, cfg.MaxAge, cfg.MaxMsgsPerSubject)
	}
	now := time.Now()
	if out, err := b.SignedOut(ctx, "0123abcd", now); err != nil || out {
		t.Fatalf("before any sign-out: %v, %v", out, err)
	}
	if err := a.SignOut(ctx, "0123abcd", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if out, err := b.SignedOut(ctx, "0123abcd", now); err != nil || !out {
		t.Fatalf("signed out on the other node: %v, %v; want true", out, err)
	}
	if out, _ := b.SignedOut(ctx, "0123abcd", now.Add(2*time.Hour)); out {
		t.Fatal("still signed out after the session would have expired")
	}
	for _, bad := range []string{"", "a.b", "a*", "a b", "../x", strings.Repeat("a", 129)} {
		if err := a.SignOut(ctx, bad, now.Add(time.Hour)); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("SignOut(%q): %v, want KindInvalid", bad, err)
		}
		if out, err := b.SignedOut(ctx, bad, now); out || err != nil {
			t.Errorf("SignedOut(%q) = %v, %v", bad, out, err)
		}
	}
}
