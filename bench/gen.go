package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/store/eventlog"
)

// isoMillis is how Allpass writes times: UTC with milliseconds.
const isoMillis = "2006-01-02T15:04:05.000Z"

// epoch is where the workload's clock starts. Every run draws the same shapes from the
// same seed, so two runs fold the same mix of outcomes.
var epoch = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// delivery is one webhook Allpass would send, before it is sealed.
type delivery struct {
	plaintext []byte
	envTime   string    // the envelope's time: when Allpass sent it
	received  time.Time // the receive time the stored event gets
}

// webhook is a sealed delivery, as it travels over HTTP.
type webhook struct {
	body []byte
	sig  string
	// url and header, when url is set, are another provider's webhook (ingest_providers):
	// its POST /webhooks/{provider}/{app} and its signature headers.
	url    string
	header http.Header
}

// workload draws deliveries for many applicants at once, interleaved as a busy Allpass
// application sends them: a pool of applicants in flight, each delivery from a random one
// of them. The mix holds every fold outcome:
//   - applied: the usual lifecycle (created, in progress, completed, review, decision);
//   - annotated: steps passed, duplicate email, expired document with a warning;
//   - unknown: event names outside the catalogue;
//   - irregular: a journey that starts without applicantCreated, or a decision followed
//     by applicantCompleted;
//   - stale: a status event delivered after the next status event;
//   - duplicate: the same payload delivered again later (a new envelope time, so the
//     stream stores it again and the fold marks it).
type workload struct {
	rng    *rand.Rand
	app    *allpass.App
	clock  time.Time
	active []*journey
	// Applicants counts journeys started so far.
	Applicants int
	// short draws the scale run's journeys: about five events each (see newShortJourney).
	short bool
	// limit, when above 0, is how many journeys are drawn in all: once reached, next
	// only finishes the journeys in flight, and more reports when none is left.
	limit int
	// onFirst, when set, is told each applicant's id as its first delivery is drawn.
	onFirst func(id string)
}

// journey is one applicant's deliveries, in the order they will be sent.
type journey struct {
	id, ext   string
	createdAt time.Time
	sends     []send
	started   bool // a delivery of it has been drawn
}

type send struct {
	typ      domain.EventType
	step     string
	warnings []string
	at       time.Time // the payload's updatedAt
}

// newWorkload draws applicants for app. inFlight is how many applicants are in the
// middle of their journeys at any time.
func newWorkload(seed uint64, app *allpass.App, inFlight int) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), app: app,
		clock: epoch, active: make([]*journey, 0, inFlight)}
}

// more reports whether next has a delivery left to draw: always, unless limit is set
// and every journey of it has been sent.
func (w *workload) more() bool {
	return w.limit <= 0 || w.Applicants < w.limit || len(w.active) > 0
}

// drawing reports whether new journeys are still drawn.
func (w *workload) drawing() bool { return w.limit <= 0 || w.Applicants < w.limit }

// firstDeliveries draws n deliveries from w that are each an applicant's first (the
// other deliveries drawn meanwhile are dropped): a workload where every webhook makes
// its applicant's data key.
func firstDeliveries(w *workload, n int) []delivery {
	ds := make([]delivery, 0, n)
	first := false
	w.onFirst = func(string) { first = true }
	defer func() { w.onFirst = nil }()
	for len(ds) < n {
		first = false
		d := w.next()
		if first {
			ds = append(ds, d)
		}
	}
	return ds
}

// next returns the next delivery to send; call it only while more reports true.
func (w *workload) next() delivery {
	for len(w.active) < cap(w.active) && w.drawing() {
		w.active = append(w.active, w.journey())
	}
	i := w.rng.IntN(len(w.active))
	j := w.active[i]
	if !j.started {
		j.started = true
		if w.onFirst != nil {
			w.onFirst(j.id)
		}
	}
	s := j.sends[0]
	j.sends = j.sends[1:]
	if len(j.sends) == 0 {
		if w.drawing() {
			w.active[i] = w.journey()
		} else {
			last := len(w.active) - 1
			w.active[i] = w.active[last]
			w.active = w.active[:last]
		}
	}
	// Deliveries are a few milliseconds apart overall; each journey's own events are
	// further apart (their updatedAt moves by seconds to minutes).
	w.clock = w.clock.Add(time.Duration(1+w.rng.IntN(5)) * time.Millisecond)
	pt, err := json.Marshal(struct {
		Type           domain.EventType `json:"type"`
		ID             string           `json:"id"`
		ExternalUserID string           `json:"externalUserId"`
		AppKey         domain.AppKey    `json:"appKey"`
		LevelName      string           `json:"levelName"`
		Warnings       []string         `json:"warnings"`
		StepName       string           `json:"stepName,omitempty"`
		CreatedAt      string           `json:"createdAt"`
		UpdatedAt      string           `json:"updatedAt"`
	}{s.typ, j.id, j.ext, w.app.AppKey, "basic-kyc-level", s.warnings, s.step,
		j.createdAt.Format(isoMillis), s.at.Format(isoMillis)})
	if err != nil {
		panic(err) // a struct of strings always encodes
	}
	return delivery{plaintext: pt, envTime: w.clock.Format(isoMillis), received: w.clock}
}

var stepNames = [...]string{"document", "selfie", "liveness", "proofOfAddress", "questionnaire"}
var unknownTypes = [...]domain.EventType{"applicantLevelChanged", "applicantPersonalInfoChanged", "applicantReset"}

// journey draws the next journey of the kind this workload draws.
func (w *workload) journey() *journey {
	if w.short {
		return w.newShortJourney()
	}
	return w.newJourney()
}

// newShortJourney draws the scale run's journey, about five events (DESIGN.md section 14:
// 2,000,000 applicants, about 10,000,000 events): created, in progress, one step passed,
// completed, a decision; now and then an annotation, an irregular start, a redelivery or
// a status event delivered late, so the fold meets every kind of outcome at scale too.
func (w *workload) newShortJourney() *journey {
	w.Applicants++
	rng := w.rng
	j := &journey{id: w.uuid(), ext: fmt.Sprintf("user-%d", w.Applicants), createdAt: w.clock}
	t := w.clock
	var evs []send
	add := func(typ domain.EventType, step string, warnings ...string) {
		t = t.Add(time.Duration(1000+rng.IntN(300_000)) * time.Millisecond)
		if warnings == nil {
			warnings = []string{}
		}
		evs = append(evs, send{typ: typ, step: step, warnings: warnings, at: t})
	}
	maybe := func(p float64) bool { return rng.Float64() < p }
	if !maybe(0.02) {
		add(domain.EventCreated, "")
	}
	add(domain.EventInProgress, "")
	add(domain.EventStepPassed, stepNames[rng.IntN(len(stepNames))])
	switch {
	case maybe(0.03):
		add(domain.EventDuplicateEmail, "")
	case maybe(0.02):
		add(domain.EventExpiredDocument, "", "documentExpired")
	case maybe(0.01):
		add(unknownTypes[rng.IntN(len(unknownTypes))], "")
	}
	add(domain.EventCompleted, "")
	if maybe(0.7) {
		add(domain.EventApproved, "")
	} else {
		add(domain.EventRejected, "")
	}
	j.sends = w.sendOrder(evs)
	return j
}

func (w *workload) newJourney() *journey {
	w.Applicants++
	rng := w.rng
	j := &journey{id: w.uuid(), ext: fmt.Sprintf("user-%d", w.Applicants), createdAt: w.clock}
	t := w.clock
	var evs []send
	add := func(typ domain.EventType, step string, warnings ...string) {
		t = t.Add(time.Duration(1000+rng.IntN(300_000)) * time.Millisecond)
		if warnings == nil {
			warnings = []string{}
		}
		evs = append(evs, send{typ: typ, step: step, warnings: warnings, at: t})
	}
	maybe := func(p float64) bool { return rng.Float64() < p }
	decide := func() {
		add(domain.EventCompleted, "")
		if maybe(0.1) {
			add(domain.EventOnHold, "")
		}
		add(domain.EventInReview, "")
		if maybe(0.7) {
			add(domain.EventApproved, "")
		} else {
			add(domain.EventRejected, "")
		}
		if maybe(0.02) {
			add(domain.EventCompleted, "") // irregular: no transition from a decision
		}
	}
	steps := func(n int) {
		first := rng.IntN(len(stepNames))
		for i := range n {
			add(domain.EventStepPassed, stepNames[(first+i)%len(stepNames)])
		}
	}
	if !maybe(0.02) {
		add(domain.EventCreated, "") // else irregular: the first event is not applicantCreated
	}
	add(domain.EventInProgress, "")
	steps(2 + rng.IntN(3))
	if maybe(0.3) {
		// Sent back for a missing document, then resumed.
		add(domain.EventIncomplete, "")
		add(domain.EventInProgress, "")
	}
	switch {
	case maybe(0.06):
		add(domain.EventDuplicateEmail, "")
	case maybe(0.05):
		add(domain.EventExpiredDocument, "", "documentExpired")
	case maybe(0.03):
		add(unknownTypes[rng.IntN(len(unknownTypes))], "")
	}
	decide()
	if maybe(0.15) {
		// A restart after the decision: a new document, a second review.
		add(domain.EventInProgress, "")
		steps(1)
		decide()
	}

	j.sends = w.sendOrder(evs)
	return j
}

// sendOrder is the order a journey's events are sent in: a few status events arrive
// after the next status event (stale when folded), and a few deliveries come again later
// with the same payload.
func (w *workload) sendOrder(evs []send) []send {
	maybe := func(p float64) bool { return w.rng.Float64() < p }
	order := make([]send, 0, len(evs)+2)
	var held *send
	for i := range evs {
		e := evs[i]
		if held == nil && i > 0 && e.typ.Class() == domain.ClassStatus && i+1 < len(evs) && maybe(0.03) {
			held = &evs[i]
			continue
		}
		order = append(order, e)
		if held != nil && e.typ.Class() == domain.ClassStatus {
			order = append(order, *held)
			held = nil
		}
		if maybe(0.03) {
			order = append(order, e) // redelivered: same payload, later envelope time
		}
	}
	if held != nil {
		order = append(order, *held)
	}
	return order
}

func (w *workload) uuid() string {
	var b [16]byte
	for i := range 2 {
		v := w.rng.Uint64()
		for k := range 8 {
			b[i*8+k] = byte(v >> (8 * k))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// benchApp is the Allpass application every phase uses, its keys drawn from the seed.
func benchApp(seed uint64) *allpass.App {
	rng := rand.New(rand.NewPCG(seed, 7))
	var k allpass.Keys
	for i := range k.Secret {
		k.Secret[i] = byte(rng.Uint32())
	}
	k.HMAC = make([]byte, 32)
	for i := range k.HMAC {
		k.HMAC[i] = byte(rng.Uint32())
	}
	w := &workload{rng: rng}
	return &allpass.App{Name: "bench", AppKey: domain.AppKey(w.uuid()), Method: allpass.MethodCBC, Keys: []allpass.Keys{k}}
}

// seal makes the webhooks of ds as Allpass sends them, on every core.
func seal(app *allpass.App, ds []delivery) ([]webhook, error) {
	out := make([]webhook, len(ds))
	err := parallel(len(ds), func(i int) error {
		body, sig, err := allpass.Seal(app.Method, app.Keys[0], ds[i].plaintext, ds[i].envTime, nil)
		out[i] = webhook{body: body, sig: sig}
		return err
	})
	return out, err
}

// stored is one event in the form the event log keeps it: what allpass.Open makes of the
// sealed webhook, sealed by the key ring and encoded as Append encodes it.
type stored struct {
	subject string
	typ     domain.EventType
	msgID   string
	data    []byte
}

// storedEvents seals each delivery, opens it as the ingest handler does, and encodes
// the event as EventLog.Append would store it. It runs on every core.
func storedEvents(ctx context.Context, ring *eventlog.Keyring, app *allpass.App, ds []delivery) ([]stored, error) {
	out := make([]stored, len(ds))
	err := parallel(len(ds), func(i int) error {
		body, sig, err := allpass.Seal(app.Method, app.Keys[0], ds[i].plaintext, ds[i].envTime, nil)
		if err != nil {
			return err
		}
		ev, msgID, err := app.Open(body, sig, ds[i].received, allpass.Options{KeepRaw: true})
		if err != nil {
			return err
		}
		if err := ring.Seal(ctx, &ev); err != nil {
			return err
		}
		data, err := eventlog.EncodeEvent(&ev)
		if err != nil {
			return err
		}
		subject, err := eventlog.Subject(ev.AppKey, ev.ApplicantID)
		if err != nil {
			return err
		}
		out[i] = stored{subject: subject, typ: ev.Type, msgID: msgID, data: data}
		return nil
	})
	return out, err
}

// parallel runs fn(0..n-1) on every core and returns the first error.
func parallel(n int, fn func(i int) error) error {
	return parallelN(n, runtime.GOMAXPROCS(0), fn)
}

// parallelN runs fn(0..n-1) on the given number of goroutines and returns the first error.
func parallelN(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
