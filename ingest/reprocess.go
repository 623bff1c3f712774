package ingest

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/httperr"
	"go.uber.org/zap"
)

// ReprocessResult counts what one Reprocess run did.
type ReprocessResult struct {
	Seen       int `json:"seen"`       // rejects read
	Recovered  int `json:"recovered"`  // opened with the current keys and appended as new events
	Duplicates int `json:"duplicates"` // opened, and the log already had them (reprocessed before, or retried by Allpass)
	Failing    int `json:"failing"`    // still refused with the current keys
	// Truncated counts samples whose body was cut when kept: they cannot open, and are
	// skipped (ReprocessConfig.Skipped hears of each).
	Truncated int `json:"truncated"`
	// FailingByReason counts the still-failing rejects by the code they fail with now.
	FailingByReason map[string]int `json:"failingByReason"`
	// Next is the reject sequence to resume from: one past the last reject handled.
	Next uint64 `json:"next"`
}

// ReprocessConfig says how Reprocess opens and appends rejects.
type ReprocessConfig struct {
	// Apps are the current Allpass apps, whose keys the rejects are tried with.
	Apps []*allpass.App
	// Providers are the current apps of the other providers: a reject of one of them
	// (Reject.Provider) is tried with the app of its provider it was sent to. Apps and
	// Providers may each be empty, not both.
	Providers []*ProviderApp
	// Options are those the handler opens webhooks with (keep_raw).
	Options allpass.Options
	// Times is the handler's trusted time window (HandlerConfig.Times), applied from the
	// reject's own receive time, as the webhook would have been.
	Times domain.TimeBounds
	// AppendTimeout bounds each append's wait for the log's acknowledgement, as
	// HandlerConfig.AppendTimeout bounds a webhook's: the one ingest.append_timeout.
	// Default DefaultAppendTimeout.
	AppendTimeout time.Duration
	Logger        *zap.Logger // nil: no logs
	// Skipped, if set, is told of each reject skipped: a sample whose body was cut.
	Skipped func(domain.Reject)
}

// Reprocess re-opens each kept reject from sequence from on with the current keys of
// cfg.Apps, and appends those that now open. A reject opens to the same Nats-Msg-Id as
// the original delivery would have, so reprocessing twice, or reprocessing a webhook
// Allpass has meanwhile redelivered, finds a duplicate instead of adding a second event
// (within the stream's duplicate window; past it the fold still marks the event a
// duplicate).
//
// A reject is tried with the app it was sent to (by name or appKey); one sent to the
// generic path, or to an app since renamed, is tried with every app. Authenticated
// rejects, samples and rejects kept before the split are all tried alike, except a
// sample whose body was cut: it cannot open, and is counted as Truncated and skipped.
// An append that fails stops the run with its error; the result so far says where to
// resume (Next).
func Reprocess(ctx context.Context, events EventLog, cfg ReprocessConfig, from uint64) (ReprocessResult, error) {
	const op = "ingest.Reprocess"
	res := ReprocessResult{FailingByReason: map[string]int{}, Next: from}
	if len(cfg.Apps) == 0 && len(cfg.Providers) == 0 {
		return res, domain.E(op, domain.KindInvalid, "no apps configured")
	}
	idx, err := newAppIndex(cfg.Apps)
	if err != nil {
		return res, domain.E(op, domain.KindInvalid, err)
	}
	pidx, err := newProviderIndex(cfg.Providers)
	if err != nil {
		return res, domain.E(op, domain.KindInvalid, err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("reprocess")
	times := timeBounds(cfg.Times)
	appendTimeout := cfg.AppendTimeout
	if appendTimeout <= 0 {
		appendTimeout = DefaultAppendTimeout
	}

	err = events.Rejects(ctx, from, func(r domain.Reject) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		res.Seen++
		if r.Truncated() {
			res.Truncated++
			res.Next = r.Seq + 1
			if cfg.Skipped != nil {
				cfg.Skipped(r)
			}
			return nil
		}
		label, ev, msgID, err := reopen(idx, pidx, r, cfg.Options)
		if err != nil {
			_, reason, _ := httperr.Answer(err) // the code the webhook would be refused with now
			res.Failing++
			res.FailingByReason[reason]++
			log.Debug("reject still refused", zap.Uint64("rejectSeq", r.Seq), zap.String("reason", reason))
			res.Next = r.Seq + 1
			return nil
		}
		trustTime(&ev, times)
		actx, cancel := context.WithTimeout(ctx, appendTimeout)
		seq, dup, err := events.Append(actx, &ev, msgID)
		cancel()
		if err != nil {
			return err
		}
		if dup {
			res.Duplicates++
		} else {
			res.Recovered++
		}
		log.Debug("reject reprocessed", zap.Uint64("rejectSeq", r.Seq), zap.String("app", label),
			zap.Uint64("seq", seq), zap.Bool("duplicate", dup))
		res.Next = r.Seq + 1
		return nil
	})
	log.Info("rejects reprocessed", zap.Int("seen", res.Seen), zap.Int("recovered", res.Recovered),
		zap.Int("duplicates", res.Duplicates), zap.Int("failing", res.Failing), zap.Int("truncated", res.Truncated),
		zap.Uint64("next", res.Next))
	if err != nil {
		return res, domain.E(op, domain.KindOf(err), err)
	}
	return res, nil
}

// reopen opens reject r as its webhook would open now: with the app of its provider it
// was sent to, or, for Allpass, with the app it names (any app when it names none that is
// configured). It returns the name of the app that opened it.
func reopen(idx appIndex, pidx providerIndex, r domain.Reject, opt allpass.Options) (string, domain.Event, string, error) {
	if p := domain.Provider(r.Provider); p != "" && p != domain.ProviderAllpass {
		a, ok := pidx.lookup(p, r.App)
		if !ok {
			return "", domain.Event{}, "", errNoApp
		}
		h := make(http.Header, len(r.Headers))
		for k, v := range r.Headers {
			h.Set(k, v)
		}
		ev, msgID, err := a.Open([]byte(r.Body), h, r.ReceivedAt, opt.KeepRaw)
		return a.name, ev, msgID, err
	}
	candidates, ok := idx.lookup(r.App)
	if !ok {
		candidates = idx.all
	}
	if len(candidates) == 0 {
		return "", domain.Event{}, "", errNoApp
	}
	app, ev, msgID, err := openAny(candidates, []byte(r.Body), signatureOf(r.Headers), r.ReceivedAt, opt)
	if err != nil {
		return "", ev, msgID, err
	}
	return app.Name, ev, msgID, nil
}

// signatureOf finds the signature header among a reject's kept headers, whatever the case
// its name was kept in.
func signatureOf(headers map[string]string) string {
	if v, ok := headers[allpass.SignatureHeader]; ok {
		return v
	}
	for k, v := range headers {
		if strings.EqualFold(k, allpass.SignatureHeader) {
			return v
		}
	}
	return ""
}
