package reconcile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/sumsub"
	"github.com/kycstate/kycstate/ingest/veriff"
	"github.com/kycstate/kycstate/ingest/webhook"
	"go.uber.org/zap"
)

// ProviderAPI is an app's status API of another provider (apps[].api, DESIGN.md section
// 13): where it is and how a request authenticates.
type ProviderAPI struct {
	BaseURL string
	Timeout time.Duration
	// AppToken and SecretKey are Sumsub's App-Token pair: X-App-Token, and the key of
	// X-App-Access-Sig. Never logged.
	AppToken  string
	SecretKey []byte
	// APIKey is Persona's API key, sent as a Bearer token. Never logged.
	APIKey string
}

// ProviderApp is an app of Sumsub, Persona or Veriff whose applicants are reconciled
// through the provider's status API. Onfido is not among them (see the package doc).
type ProviderApp struct {
	Provider domain.Provider
	// Name is the config entry's name: the AppKey of the app's events.
	Name string
	API  ProviderAPI
	// Veriff is the Veriff app: its API key (X-AUTH-CLIENT) and shared secrets (the
	// request is signed with the first, the answer's X-HMAC-SIGNATURE verified against
	// every one). Nil for other providers.
	Veriff *veriff.App
}

// providerAnswer is a status API's answer read the way a webhook is.
type providerAnswer struct {
	ready          bool // false: the provider has no status to compare yet (Veriff: no decision)
	typ            domain.EventType
	providerStatus string
	status         domain.Status
	updatedAt      time.Time
	ext            domain.ExternalUserID
}

// errForged is an answer whose signature does not verify.
var errForged = errors.New("the answer's signature does not verify")

// newProviderClient returns the client of a's status API and the parser of its answers.
func newProviderClient(a ProviderApp, maxBody int64) (*client, func(domain.ApplicantID, fetched) (providerAnswer, error), error) {
	const op = "reconcile.newProviderClient"
	if !domain.IsSubjectToken(a.Name) {
		return nil, nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: the name is not a subject token", a.Name))
	}
	c, err := newHTTPClient(op, a.Name, "api", a.API.BaseURL, a.API.Timeout, maxBody)
	if err != nil {
		return nil, nil, err
	}
	switch a.Provider {
	case domain.ProviderSumsub:
		if a.API.AppToken == "" || len(a.API.SecretKey) == 0 {
			return nil, nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: a Sumsub status API needs an app token and its secret key", a.Name))
		}
		token, secret := a.API.AppToken, a.API.SecretKey
		c.path = sumsub.ApplicantPath
		c.sign = func(req *http.Request, _ domain.ApplicantID) error {
			for k, v := range sumsub.SignRequest(token, secret, time.Now(), req.Method, req.URL.RequestURI(), nil) {
				req.Header.Set(k, v)
			}
			return nil
		}
		return c, func(id domain.ApplicantID, f fetched) (providerAnswer, error) {
			s, err := sumsub.ParseApplicant(id, f.body)
			if err != nil {
				return providerAnswer{}, err
			}
			return providerAnswer{ready: true, typ: s.Type, providerStatus: s.ProviderStatus, status: s.Status,
				updatedAt: s.UpdatedAt, ext: s.ExternalUserID}, nil
		}, nil
	case domain.ProviderPersona:
		if a.API.APIKey == "" {
			return nil, nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: a Persona status API needs an API key", a.Name))
		}
		headers := persona.InquiryRequestHeaders(a.API.APIKey)
		c.path = persona.InquiryPath
		c.sign = func(req *http.Request, _ domain.ApplicantID) error {
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			return nil
		}
		return c, func(id domain.ApplicantID, f fetched) (providerAnswer, error) {
			s, err := persona.ParseInquiry(id, f.body)
			if err != nil {
				return providerAnswer{}, err
			}
			return providerAnswer{ready: true, typ: s.Type, providerStatus: s.ProviderStatus, status: s.Status,
				updatedAt: s.UpdatedAt, ext: s.ExternalUserID}, nil
		}, nil
	case domain.ProviderVeriff:
		v := a.Veriff
		if v == nil {
			return nil, nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: a Veriff status API needs the Veriff app", a.Name))
		}
		if err := v.Validate(); err != nil {
			return nil, nil, domain.E(op, domain.KindInvalid, err)
		}
		c.path = veriff.DecisionPath
		c.sigHeader = veriff.HeaderSignature
		c.sign = func(req *http.Request, id domain.ApplicantID) error {
			_, headers, err := v.DecisionRequest(id)
			for k, val := range headers {
				req.Header.Set(k, val)
			}
			return err
		}
		return c, func(id domain.ApplicantID, f fetched) (providerAnswer, error) {
			// Veriff signs its answers as its webhooks: the hex HMAC-SHA256 of the body.
			if !webhook.VerifyHex(sha256.New, v.Secrets, f.signature, f.body) {
				return providerAnswer{}, errForged
			}
			d, err := veriff.ParseDecision(id, f.body)
			if err != nil {
				return providerAnswer{}, err
			}
			if !d.Ready {
				return providerAnswer{}, nil
			}
			if d.Class != domain.ClassStatus {
				return providerAnswer{}, domain.E("veriff.ParseDecision", domain.KindUnprocessable,
					"verification.status is not a status the table names")
			}
			return providerAnswer{ready: true, typ: d.Type, providerStatus: d.ProviderStatus, status: d.Status,
				updatedAt: d.UpdatedAt, ext: d.ExternalUserID}, nil
		}, nil
	}
	return nil, nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: provider %q has no status API kycstate reconciles with", a.Name, a.Provider))
}

// providerKey names a provider app in Reconciler.papps.
func providerKey(p domain.Provider, app domain.AppKey) string { return string(p) + "." + string(app) }

// ProviderMsgID is the Nats-Msg-Id of a reconciled provider status: SHA-256 over
// length-prefixed "reconcile", provider, app, applicant id, the provider's own status and
// its updated time, so two checks of the same answer append it once.
func ProviderMsgID(p domain.Provider, app domain.AppKey, id domain.ApplicantID, providerStatus string, updatedAt time.Time) string {
	h := sha256.New()
	for _, f := range []string{"reconcile", string(p), string(app), string(id), providerStatus, updatedAt.UTC().Format(time.RFC3339Nano)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkProvider makes the call for st, an applicant of a provider app (the rate limit
// already waited for), and acts on it as check does for Allpass.
func (r *Reconciler) checkProvider(ctx context.Context, a *appState, st domain.State, opt CheckOptions) Report {
	rep := newReport(st)
	rep.DryRun = opt.DryRun
	defer func() { r.count(a, &rep) }()

	f, ok := r.call(ctx, a, st, &rep, func(msg string) string { return providerWords(st.Provider, msg) })
	if !ok {
		return rep
	}
	ans, err := a.parse(st.ApplicantID, f)
	if err != nil {
		reason, msg := ReasonBadSignature, "the "+string(st.Provider)+" answer was refused: its signature does not verify"
		if !errors.Is(err, errForged) {
			reason = ReasonInvalid
			if domain.KindOf(err) == domain.KindInvalid {
				reason = ReasonMalformed
			}
			msg = "the " + string(st.Provider) + " answer was refused"
			if m := domain.MessageOf(err); m != "" {
				msg += ": " + m
			}
		}
		r.log.Warn("status API answer refused", zap.String("app", a.name), zap.String("provider", string(st.Provider)),
			zap.String("applicantId", string(st.ApplicantID)), zap.String("reason", reason), zap.Error(err))
		rep.fail(reason, msg)
		return rep
	}
	a.succeeded()
	if !ans.ready {
		rep.Action = ActionNotFound
		rep.Error = "the provider has no decision for this applicant yet"
		return rep
	}
	rep.OpenAPIStatus, rep.OpenAPIUpdatedAt = ans.status, ans.updatedAt.UTC()
	if ans.updatedAt.IsZero() {
		rep.OpenAPIUpdatedAt = time.Time{}
	}
	// As for Allpass, the common statuses are compared: a provider status that means the
	// same common status (Sumsub's RED+RETRY and a reset) is no divergence.
	if ans.status == st.Status {
		rep.Action = ActionInSync
		return rep
	}
	r.m.divergences.WithLabelValues(a.name).Inc()
	rep.Action = ActionAppended
	if opt.DryRun {
		return rep
	}
	ev := domain.Event{
		V: domain.StoredVersion, Provider: string(st.Provider), Origin: domain.OriginOpenAPI,
		AppKey: st.AppKey, ApplicantID: st.ApplicantID, ExternalUserID: ans.ext, Type: ans.typ,
		ProviderStatus: ans.providerStatus,
		EventAt:        f.at, EventAtSource: domain.SourceOpenAPITime, ReceivedAt: f.at,
		Payload: json.RawMessage(bytes.Clone(f.body)),
	}
	if r.cfg.KeepRaw {
		ev.Raw = &domain.Raw{Body: string(f.body), Signature: f.signature}
	}
	msgID := ProviderMsgID(st.Provider, st.AppKey, st.ApplicantID, ans.providerStatus, ans.updatedAt)
	actx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.AppendTimeout > 0 {
		actx, cancel = context.WithTimeout(ctx, r.cfg.AppendTimeout)
	}
	defer cancel()
	seq, dup, err := r.events.Append(actx, &ev, msgID)
	if err != nil {
		r.log.Warn("reconciled event not appended", zap.String("app", a.name),
			zap.String("applicantId", string(st.ApplicantID)), zap.Error(err))
		rep.fail(ReasonAppend, "the event log did not confirm the append")
		return rep
	}
	rep.Seq = seq
	r.log.Info("status reconciled from the provider's API", zap.String("app", a.name),
		zap.String("provider", string(st.Provider)), zap.String("applicantId", string(st.ApplicantID)),
		zap.String("from", string(st.Status)), zap.String("to", string(ans.status)),
		zap.Uint64("seq", seq), zap.Bool("duplicate", dup))
	return rep
}

// providerWords rewrites a call error's message, which names Allpass's Open API, for
// another provider's status API.
func providerWords(p domain.Provider, msg string) string {
	msg = strings.ReplaceAll(msg, "the Open API", "the "+string(p)+" API")
	return strings.ReplaceAll(msg, "the private key", "the API credentials")
}

// WithProviders adds the apps of other providers whose applicants Check reconciles
// through their status APIs. Call it once, after New and before any check. The
// background sweep stays Allpass's (its progress is kept per Allpass app); a provider's
// applicants are checked on request (POST /v1/applicants/{id}/reconcile, kycstate
// reconcile --applicant).
// Errors: KindInvalid for an app without a usable status API setting.
func (r *Reconciler) WithProviders(apps []ProviderApp) error {
	for _, a := range apps {
		if a.API.BaseURL == "" {
			continue
		}
		c, parse, err := newProviderClient(a, r.cfg.MaxBody)
		if err != nil {
			return err
		}
		st := &appState{name: a.Name, client: c, provider: a.Provider, parse: parse}
		r.papps[providerKey(a.Provider, domain.AppKey(a.Name))] = st
		r.m.stopped.WithLabelValues(st.name).Set(0)
	}
	return nil
}

// Providers reports whether any app of another provider is reconciled.
func (r *Reconciler) Providers() bool { return len(r.papps) > 0 }
