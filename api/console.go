package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/api/console"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/authlog"
	"go.uber.org/zap"
)

// newConsole builds the auditor console over this server's own reads.
func newConsole(s *server, key []byte, signOuts console.SignOuts) (http.Handler, error) {
	return console.New(console.Config{
		Backend:     consoleBackend{s},
		Logger:      s.log,
		SessionKey:  sessionKeyFor(key, s.tokens),
		VerifyBound: s.verifyTimeout + writeMargin,
		SignOuts:    signOuts,
		Proxies:     s.proxies,
		Refusals:    s.refusals.Listener(authlog.ListenerConsole),
	})
}

// sessionKeyFor binds the console's session key to the configured tokens: a session
// names its token and role, and must end when that token is removed, its secret rotated
// or its role changed, even though the key itself (derived from keys.master) outlives a
// restart. Nodes with the same key and the same tokens, in any order, agree. Nil stays
// nil (a random key per process).
func sessionKeyFor(key []byte, tokens []tokenHash) []byte {
	if key == nil {
		return nil
	}
	ts := slices.Clone(tokens)
	slices.SortFunc(ts, func(a, b tokenHash) int { return bytes.Compare(a.sum[:], b.sum[:]) })
	m := hmac.New(sha256.New, key)
	m.Write([]byte("kycstate console tokens v1\x00"))
	for _, t := range ts {
		fmt.Fprintf(m, "%d:%s\x00%s\x00", len(t.name), t.name, t.role)
		m.Write(t.sum[:])
	}
	return m.Sum(nil)
}

// consoleBackend is console.Backend over the server: the same token check, projection
// queries, point-in-time fold and verify as the JSON routes, so a page shows what the
// API answers. The console checks roles before calling it, as require does for routes.
type consoleBackend struct{ s *server }

var _ console.Backend = consoleBackend{}

func (b consoleBackend) Authenticate(token string) (console.Principal, error) {
	p, err := b.s.authenticateToken(token)
	if err != nil {
		return console.Principal{}, domain.E("token", domain.KindUnauthorized, err)
	}
	return console.Principal{Name: p.name, Role: p.role}, nil
}

func (b consoleBackend) State(ctx context.Context, p domain.Provider, id domain.ApplicantID) (domain.State, error) {
	st, err := b.s.find(applicantRef{provider: p, raw: string(id)})
	if err != nil {
		return domain.State{}, err
	}
	return b.s.openState(ctx, st)
}

func (b consoleBackend) StateAt(ctx context.Context, p domain.Provider, id domain.ApplicantID, as console.AsOf) (domain.State, error) {
	keep := keepReceivedBy(as.Time)
	if as.Seq != 0 {
		keep = keepUpToSeq(as.Seq)
	}
	cur, err := b.s.find(applicantRef{provider: p, raw: string(id)})
	if err != nil {
		return domain.State{}, err
	}
	st, found, err := b.s.stateAt(ctx, cur.Key(), keep)
	switch {
	case err != nil:
		return domain.State{}, err
	case !found:
		return domain.State{}, errParam("id", domain.KindNotFound, "applicant "+string(id)+" had no events by then")
	}
	return b.s.openState(ctx, st)
}

func (b consoleBackend) History(ctx context.Context, p domain.Provider, id domain.ApplicantID, after uint64, limit int) (client.History, error) {
	return b.s.history(applicantRef{provider: p, raw: string(id)}, after, min(limit, maxLimit))
}

func (b consoleBackend) Lookup(ctx context.Context, ext domain.ExternalUserID, limit int) ([]domain.State, error) {
	switch {
	case ext == "":
		return nil, errParam("externalUserId", domain.KindInvalid, "must not be empty")
	case len(ext) > maxExtIDBytes:
		return nil, errParam("externalUserId", domain.KindInvalid, fmt.Sprintf("longer than %d bytes", maxExtIDBytes))
	}
	states, err := b.s.byExternalUserID(ctx, ext, "", min(limit, maxLimit))
	if err != nil {
		return nil, err
	}
	for i := range states {
		if states[i], err = b.s.openState(ctx, states[i]); err != nil {
			return nil, err
		}
	}
	return states, nil
}

func (b consoleBackend) Anomalies(ctx context.Context, after uint64, limit int) (client.Anomalies, error) {
	return b.s.anomalies(ctx, after, min(limit, maxLimit))
}

func (b consoleBackend) Changes(ctx context.Context, after uint64, limit int) ([]domain.Change, error) {
	cs, err := b.s.proj.Changes(after, min(limit, maxLimit))
	if err != nil {
		return nil, err
	}
	for i, c := range cs {
		if cs[i].ExternalUserID, err = b.s.openedID(ctx, c.Provider, c.AppKey, c.ApplicantID, c.ExternalUserID, c.SealedExternalUserID); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func (b consoleBackend) Health(ctx context.Context) console.Health {
	h := console.Health{Checkpoint: b.s.proj.Checkpoint()}
	if b.s.lag != nil {
		h.Lag, h.LagKnown = b.s.lag(), true
	}
	if b.s.lastSweep != nil {
		h.LastSweep, h.SweepConfigured = b.s.lastSweep(), true
	}
	return h
}

// Verify runs a verify as GET /v1/verify does (runVerify).
func (b consoleBackend) Verify(ctx context.Context) (domain.VerifyResult, error) {
	return b.s.runVerify(ctx)
}

func (b consoleBackend) Erase(ctx context.Context, p domain.Provider, id domain.ApplicantID, by, reason string) (uint64, error) {
	if b.s.erase == nil {
		return 0, errParam("erase", domain.KindNotFound, "this node does not erase: it was started without the key ring")
	}
	if utf8.RuneCountInString(reason) > maxReasonChars {
		return 0, errParam("reason", domain.KindInvalid, fmt.Sprintf("longer than %d characters", maxReasonChars))
	}
	st, err := b.s.find(applicantRef{provider: p, raw: string(id)})
	if err != nil {
		return 0, err
	}
	seq, pending, err := b.s.erase(ctx, providerOf(st.Provider), st.AppKey, st.ApplicantID, by, reason)
	if err != nil {
		return 0, err
	}
	b.s.log.Info("applicant erased", zap.String("applicantId", string(id)), zap.String("token", by),
		zap.Uint64("seq", seq), zap.Bool("keyPending", pending))
	// Wait as the API's erase does, so the page shown next says erased.
	wctx, cancel := context.WithTimeout(ctx, b.s.maxWait)
	defer cancel()
	b.s.proj.WaitFor(wctx, seq)
	return seq, nil
}
