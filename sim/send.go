package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/kycstate/kycstate/internal/httperr"
)

// result is what one journey did and what the service should now hold for it.
type result struct {
	id domain.ApplicantID
	// accepted are the events the service acknowledged as stored, in the order it
	// acknowledged them (the applicant's stream order: its sends are sequential), each
	// with the sequence the service gave it.
	accepted []domain.Event
	seqs     map[uint64]bool
	// events and maxSeq are the count and highest sequence of accepted, kept by finish.
	events int
	maxSeq uint64
	// expect is accepted folded with domain's fold; outcomes counts its decisions.
	expect   domain.State
	outcomes map[domain.Outcome]int
	// lost: a genuine delivery was never answered 200, so what the service holds for this
	// applicant is unknown and it is not checked.
	lost bool
	// givenUp counts deliveries never sent (Config.GiveUpShare); truth is what the sim's
	// Open API says of the applicant (nil without one); reconciled is the action of the
	// service's check, reconcileErr its error.
	givenUp      int
	truth        *truth
	reconciled   string
	reconcileErr string

	answers                              Answers
	latencies                            []time.Duration
	webhooks, retries                    int
	deliveries, resends, late, forgeries int
	problems                             []string
}

// sealed is a webhook as sent: the body and its x-allpass-signature.
type sealed struct {
	body []byte
	sig  string
	// url and header, when header is set, are another provider's webhook: its path and
	// its signature headers (sig is unused then).
	url    string
	header http.Header
}

// answer is the final answer to one webhook, after retries.
type answer struct {
	status   int
	seq      uint64
	dup      bool
	code     string // the error body's code
	message  string // the error body's message
	err      error  // transport error of the last attempt
	took     time.Duration
	attempts int
}

// ok reports whether the service acknowledged the webhook as stored.
func (a answer) ok() bool { return a.err == nil && a.status == http.StatusOK && a.code == "" }

func (a answer) String() string {
	switch {
	case a.err != nil:
		return a.err.Error()
	case a.code != "":
		return fmt.Sprintf("%d %s: %s", a.status, a.code, a.message)
	}
	return fmt.Sprintf("%d", a.status)
}

// runJourney sends j's steps in order, each after the previous one was answered, and
// folds what the service acknowledged. It returns an error (and stops) only when the
// service refuses a genuine webhook outright or ctx ends.
func (r *runner) runJourney(ctx context.Context, j *journey, folder *domain.Folder) (*result, error) {
	res := &result{id: j.id, seqs: map[uint64]bool{}, outcomes: map[domain.Outcome]int{}}
	if r.openAPI != nil {
		res.truth = r.openAPI.add(j)
	}
	err := r.sendSteps(ctx, j, res)
	res.finish(folder)
	return res, err
}

// sendSteps sends j's steps and records the answers in res, until the end of the plan,
// a lost delivery, a refused one (an error) or the end of ctx (its error).
func (r *runner) sendSteps(ctx context.Context, j *journey, res *result) error {
	bodies := make([]sealed, len(j.steps))
	seqOf := make([]uint64, len(j.steps)) // a delivery step's acknowledged sequence
	// accept adds an acknowledged event to the expectation; false if its sequence was
	// already given to another of this applicant's events.
	accept := func(ev event, seq uint64) bool {
		if res.seqs[seq] {
			return false
		}
		res.seqs[seq] = true
		res.accepted = append(res.accepted, domain.Event{
			Seq: seq, ApplicantID: j.id, AppKey: r.cfg.App.AppKey, ExternalUserID: j.ext,
			Type: ev.Type, StepName: ev.StepName, Warnings: ev.Warnings, EventAt: ev.At,
		})
		return true
	}

	for si, st := range j.steps {
		ev := j.events[st.ev]
		switch st.kind {
		case stepDeliver:
			// Allpass's state moves first, then it tries to tell.
			if res.truth != nil {
				res.truth.reach(st.ev)
			}
			if st.giveUp {
				res.givenUp++
				continue
			}
			s, err := r.seal(r.cfg.App.Keys[0], j, ev)
			if err != nil {
				return err
			}
			bodies[si] = s
			a, err := r.send(ctx, s, false, res)
			if err != nil {
				return err
			}
			res.deliveries++
			switch {
			case a.ok():
				if a.dup && a.attempts == 1 {
					res.problem(j.id, "a new delivery (%s) was answered duplicate:true with seq %d", ev.Type, a.seq)
				}
				if st.late {
					res.late++
				}
				seqOf[si] = a.seq
				if !accept(ev, a.seq) {
					res.problem(j.id, "a new delivery (%s) was answered seq %d, which an earlier event of this applicant was given", ev.Type, a.seq)
				}
			case retryable(a):
				// Allpass would give up too. Whether the service stored it is unknown.
				res.lost = true
				res.problem(j.id, "lost: %s not acknowledged after %d attempts: %s", ev.Type, a.attempts, a)
				return nil
			default:
				res.lost = true
				return fmt.Errorf("the service refused a genuine webhook (%s of applicant %s): %s; are the app name, appKey, method and keys the service's?", ev.Type, j.id, a)
			}

		case stepResend:
			if bodies[st.of].body == nil {
				continue // its delivery was given up: there is nothing to resend
			}
			a, err := r.send(ctx, bodies[st.of], false, res)
			if err != nil {
				return err
			}
			res.resends++
			orig := seqOf[st.of]
			switch {
			case a.ok() && a.dup && a.seq == orig:
			case a.ok() && a.dup:
				res.problem(j.id, "a resent %s was answered duplicate of seq %d, but was stored at seq %d", ev.Type, a.seq, orig)
			case a.ok():
				res.problem(j.id, "a resent %s (identical body) was stored again at seq %d (first at %d)", ev.Type, a.seq, orig)
				accept(ev, a.seq)
			default:
				res.problem(j.id, "a resent %s was answered %s, want 200 duplicate:true", ev.Type, a)
			}

		case stepForge:
			s, err := r.forge(j, ev, st.wrongKey)
			if err != nil {
				return err
			}
			a, err := r.send(ctx, s, true, res)
			if err != nil {
				return err
			}
			res.forgeries++
			switch {
			case a.err == nil && a.status == http.StatusUnauthorized:
			case a.ok():
				res.problem(j.id, "a forged %s (bad signature) was accepted at seq %d", ev.Type, a.seq)
				accept(ev, a.seq)
			default:
				res.problem(j.id, "a forged %s (bad signature) was answered %s, want 401", ev.Type, a)
			}
		}
	}

	return nil
}

// finish folds the acknowledged events into the expectation and drops what the check
// does not need, so a run of many applicants holds little per applicant.
func (res *result) finish(folder *domain.Folder) {
	var s domain.State
	for _, e := range res.accepted {
		var rec domain.Record
		s, rec = folder.Apply(s, e)
		res.outcomes[rec.Outcome]++
		res.maxSeq = max(res.maxSeq, e.Seq)
	}
	s.Seen = nil
	res.expect = s
	res.events = len(res.accepted)
	res.accepted, res.seqs = nil, nil
}

func (res *result) problem(id domain.ApplicantID, format string, args ...any) {
	res.problems = append(res.problems, fmt.Sprintf("applicant %s: ", id)+fmt.Sprintf(format, args...))
}

// isoMillis is how Allpass writes times: UTC with milliseconds.
const isoMillis = "2006-01-02T15:04:05.000Z"

// plaintext is the decrypted webhook, fields in Allpass's order. updatedAt is the event's
// time (the service reads it first); createdAt is the applicant's.
func (r *runner) plaintext(j *journey, ev event) ([]byte, error) {
	return json.Marshal(struct {
		Type           domain.EventType      `json:"type"`
		ID             domain.ApplicantID    `json:"id"`
		ExternalUserID domain.ExternalUserID `json:"externalUserId"`
		AppKey         domain.AppKey         `json:"appKey"`
		Warnings       []string              `json:"warnings"`
		StepName       string                `json:"stepName,omitempty"`
		CreatedAt      string                `json:"createdAt"`
		UpdatedAt      string                `json:"updatedAt"`
	}{ev.Type, j.id, j.ext, r.cfg.App.AppKey, ev.Warnings, ev.StepName,
		j.createdAt.Format(isoMillis), ev.At.Format(isoMillis)})
}

// seal encrypts and signs ev with keys; the envelope time is the send time.
func (r *runner) seal(keys allpass.Keys, j *journey, ev event) (sealed, error) {
	pt, err := r.plaintext(j, ev)
	if err != nil {
		return sealed{}, err
	}
	body, sig, err := allpass.Seal(r.cfg.App.Method, keys, pt, time.Now().UTC().Format(isoMillis), rand.Reader)
	if err != nil {
		return sealed{}, fmt.Errorf("sim: sealing a webhook: %w", err)
	}
	return sealed{body: body, sig: sig}, nil
}

// forge makes a webhook the service must refuse: sealed with keys it does not know, or
// sealed correctly and then given a damaged signature.
func (r *runner) forge(j *journey, ev event, wrongKey bool) (sealed, error) {
	if wrongKey {
		var k allpass.Keys
		rand.Read(k.Secret[:])
		k.HMAC = make([]byte, 32)
		rand.Read(k.HMAC)
		return r.seal(k, j, ev)
	}
	s, err := r.seal(r.cfg.App.Keys[0], j, ev)
	s.sig = damage(s.sig)
	return s, err
}

// damage flips one bit of a hex or base64 signature, keeping its encoding, so the
// service sees a well-formed signature that does not match.
func damage(sig string) string {
	if b, err := hex.DecodeString(sig); err == nil && len(b) > 0 {
		b[mrand.IntN(len(b))] ^= 1 << mrand.IntN(8)
		return hex.EncodeToString(b)
	}
	if b, err := base64.StdEncoding.DecodeString(sig); err == nil && len(b) > 0 {
		b[mrand.IntN(len(b))] ^= 1 << mrand.IntN(8)
		return base64.StdEncoding.EncodeToString(b)
	}
	return sig + "00"
}

// send posts one webhook, retrying as Allpass would (but with short waits) while the
// answer is 5xx, 408, 429 or missing, at most MaxAttempts times. Every attempt is counted
// in res. A 401 is final: for a genuine webhook a retry would fail the same way. The
// error is ctx's, when it ends.
func (r *runner) send(ctx context.Context, s sealed, forged bool, res *result) (answer, error) {
	var a answer
	for attempt := 1; ; attempt++ {
		if err := r.pace.wait(ctx); err != nil {
			return a, err
		}
		a = r.post(ctx, s)
		a.attempts = attempt
		if err := ctx.Err(); err != nil {
			return a, err
		}
		res.webhooks++
		r.sent.Add(1)
		switch {
		case a.ok() && a.dup:
			res.answers.Duplicate++
		case a.ok():
			res.answers.OK++
		case a.err == nil && a.status == http.StatusUnauthorized:
			res.answers.Unauthorized++
		default:
			res.answers.Other++
		}
		if a.ok() {
			res.latencies = append(res.latencies, a.took)
		}
		if !retryable(a) || attempt >= r.cfg.MaxAttempts {
			return a, nil
		}
		res.retries++
		backoff := min(5*time.Second, 20*time.Millisecond<<(attempt-1))
		backoff += time.Duration(mrand.Int64N(int64(backoff)/2 + 1))
		if err := clock.Sleep(ctx, backoff); err != nil {
			return a, err
		}
	}
}

// retryable reports whether Allpass would try the webhook again after this answer.
func retryable(a answer) bool {
	if a.err != nil {
		return true
	}
	switch a.status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// post sends one attempt and decodes the answer.
func (r *runner) post(ctx context.Context, s sealed) answer {
	if s.header != nil {
		return r.postTo(ctx, s.url, s.body, s.header)
	}
	return r.postTo(ctx, r.webhookURL, s.body, http.Header{allpass.SignatureHeader: {s.sig}})
}

// postTo sends one attempt of body with header to url and decodes the answer.
func (r *runner) postTo(ctx context.Context, url string, body []byte, header http.Header) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kycstate-sim")
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	a := answer{status: resp.StatusCode, took: time.Since(start)}
	if err != nil {
		a.err = fmt.Errorf("reading the answer: %w", err)
		return a
	}
	if resp.StatusCode == http.StatusOK {
		var ok struct {
			Seq       *uint64 `json:"seq"`
			Duplicate bool    `json:"duplicate"`
		}
		if err := json.Unmarshal(b, &ok); err != nil || ok.Seq == nil || *ok.Seq == 0 {
			a.code, a.message = "bad_answer", "200 without a {\"seq\":N} body"
			return a
		}
		a.seq, a.dup = *ok.Seq, ok.Duplicate
		return a
	}
	var e httperr.Body
	if json.Unmarshal(b, &e) == nil {
		a.code, a.message = e.Error.Code, e.Error.Message
	}
	return a
}
