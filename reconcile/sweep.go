package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/clock"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
)

// Progress is a sweep's state, saved with the lease so that whichever node sweeps next
// resumes an unfinished sweep instead of calling the Open API again for the applicants
// already checked. The zero value is "no sweep yet".
type Progress struct {
	// Started is when the unfinished sweep began; zero when none is unfinished.
	Started time.Time `json:"started,omitzero"`
	Full    bool      `json:"full,omitempty"`
	// After holds, per app, the last applicant id checked (candidates go in id order).
	After map[domain.AppKey]domain.ApplicantID `json:"after,omitempty"`
	// Done lists the apps whose part of the unfinished sweep is complete.
	Done map[domain.AppKey]bool `json:"done,omitempty"`
	// Retry lists applicants whose check failed transiently (429, 5xx, time-out): the
	// next sweep checks them whatever its selection.
	Retry map[domain.AppKey][]domain.ApplicantID `json:"retry,omitempty"`
	// LastEnd is when the last complete sweep ended, LastFull when the last complete
	// full sweep began.
	LastEnd  time.Time `json:"lastEnd,omitzero"`
	LastFull time.Time `json:"lastFull,omitzero"`
}

func (p Progress) clone() Progress {
	p.After = maps.Clone(p.After)
	p.Done = maps.Clone(p.Done)
	p.Retry = maps.Clone(p.Retry)
	for k, v := range p.Retry {
		p.Retry[k] = slices.Clone(v)
	}
	return p
}

// SweepOptions change one sweep.
type SweepOptions struct {
	// Full checks every applicant, not only those outside APPROVED/REJECTED whose last
	// event is older than StaleAfter. A resumed sweep keeps the kind it began with.
	Full   bool
	DryRun bool
	// OnCheck, if set, is called after each check with the report and the counts so far.
	OnCheck func(rep Report, done, total int)
	// Save, if set, receives a copy of the progress now and then (at most every second)
	// and at the end.
	Save func(Progress)
}

// SweepResult sums one sweep up.
type SweepResult struct {
	Candidates int            // applicants the sweep set out to check (after resuming)
	Checked    int            // checks made (calls to the Open API)
	Results    map[Action]int // checks by action
	Complete   bool           // every app's part finished (stopped apps excepted)
	Stopped    []string       // apps whose sweep is stopped (401/403)
	Elapsed    time.Duration
}

// maxTransient is how many transient failures in a row end an app's part of a sweep;
// the rest waits for the next sweep.
const maxTransient = 5

// maxPauseInSweep is the longest back-off a sweep waits out; a longer Retry-After ends
// the app's part of the sweep.
const maxPauseInSweep = time.Minute

// Sweep checks the candidates of every app with an Open API, the apps in parallel, each
// at most Rate calls per second, resuming prog when it holds an unfinished sweep and
// updating it as it goes. Candidates are chosen afresh from the projection; those the
// unfinished sweep already checked are skipped. Errors: ctx's when it ends (prog then
// says how far the sweep got), the projection's when the candidates cannot be listed.
func (r *Reconciler) Sweep(ctx context.Context, opt SweepOptions, prog *Progress) (SweepResult, error) {
	start := r.now()
	if prog == nil {
		prog = &Progress{}
	}
	if prog.Started.IsZero() {
		prog.Started, prog.Full = start.UTC(), opt.Full
		prog.After, prog.Done = map[domain.AppKey]domain.ApplicantID{}, map[domain.AppKey]bool{}
	}
	if prog.After == nil {
		prog.After = map[domain.AppKey]domain.ApplicantID{}
	}
	if prog.Done == nil {
		prog.Done = map[domain.AppKey]bool{}
	}
	retry := prog.Retry
	prog.Retry = map[domain.AppKey][]domain.ApplicantID{}
	cands, err := r.candidates(prog.Full, start, prog, retry)
	if err != nil {
		return SweepResult{}, err
	}
	res := SweepResult{Results: map[Action]int{}}
	for _, ids := range cands {
		res.Candidates += len(ids)
	}
	r.log.Info("sweep started", zap.Bool("full", prog.Full), zap.Int("candidates", res.Candidates),
		zap.Bool("resumed", len(prog.After) > 0 || len(prog.Done) > 0), zap.Bool("dryRun", opt.DryRun))

	var (
		mu         sync.Mutex
		lastSave   time.Time
		saveLocked = func(force bool) {
			if opt.Save != nil && (force || time.Since(lastSave) >= time.Second) {
				lastSave = time.Now()
				opt.Save(prog.clone())
			}
		}
	)
	r.m.progress.Set(0)
	var wg sync.WaitGroup
	for _, a := range r.order {
		ids := cands[a.App.App.AppKey]
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := r.sweepApp(ctx, a, ids, opt, func(rep Report, id domain.ApplicantID, transient bool) {
				mu.Lock()
				defer mu.Unlock()
				res.Checked++
				res.Results[rep.Action]++
				if id > prog.After[a.App.App.AppKey] {
					prog.After[a.App.App.AppKey] = id
				}
				if transient {
					prog.Retry[a.App.App.AppKey] = append(prog.Retry[a.App.App.AppKey], id)
				}
				if res.Candidates > 0 {
					r.m.progress.Set(float64(res.Checked) / float64(res.Candidates))
				}
				if opt.OnCheck != nil {
					opt.OnCheck(rep, res.Checked, res.Candidates)
				}
				saveLocked(false)
			})
			if done {
				mu.Lock()
				prog.Done[a.App.App.AppKey] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.m.progress.Set(1)

	res.Complete = true
	for _, a := range r.order {
		if stopped, _ := a.status(); stopped != "" {
			res.Stopped = append(res.Stopped, a.name)
			continue
		}
		if !prog.Done[a.App.App.AppKey] {
			res.Complete = false
		}
	}
	res.Elapsed = r.now().Sub(start)
	if err := ctx.Err(); err != nil {
		for k, v := range retry { // not reached: keep them for the next sweep
			prog.Retry[k] = append(prog.Retry[k], v...)
		}
		saveLocked(true)
		return res, err
	}
	if res.Complete && !opt.DryRun {
		end := r.now().UTC()
		prog.LastEnd = end
		if prog.Full {
			prog.LastFull = prog.Started
		}
		prog.Started, prog.Full, prog.After, prog.Done = time.Time{}, false, nil, nil
		r.setLastSweep(end)
	}
	saveLocked(true)
	r.log.Info("sweep ended", zap.Int("checked", res.Checked), zap.Int("appended", res.Results[ActionAppended]),
		zap.Int("errors", res.Results[ActionError]), zap.Bool("complete", res.Complete),
		zap.Strings("stopped", res.Stopped), zap.Duration("elapsed", res.Elapsed))
	return res, nil
}

// sweepApp checks ids in order; after reports each check and whether it failed
// transiently (the cursor moves past it all the same, and it is retried next sweep). It returns true when it went
// through every id, false when it stopped early (401/403, too many failures, ctx).
func (r *Reconciler) sweepApp(ctx context.Context, a *appState, ids []domain.ApplicantID, opt SweepOptions,
	after func(Report, domain.ApplicantID, bool)) bool {
	transient := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			return false
		}
		stopped, paused := a.status()
		if stopped != "" {
			return true // said once, in the log and the metric; the report lists it
		}
		if time.Until(paused) > maxPauseInSweep {
			r.log.Warn("app backed off past this sweep; the rest waits for the next one", zap.String("app", a.name))
			return false
		}
		if err := a.wait(ctx, r.cfg.Rate, paused); err != nil {
			return false
		}
		st, found, err := r.proj.State(id)
		if err != nil || !found {
			continue // gone from the projection (a rebuild under way): nothing to compare
		}
		rep := r.check(ctx, a, st, CheckOptions{DryRun: opt.DryRun})
		if rep.Reason == "canceled" {
			return false
		}
		isTransient := false
		switch rep.Reason {
		case ReasonRateLimited, ReasonServerError, ReasonTimeout, ReasonTransport, ReasonRefused, ReasonAppend:
			isTransient = true
		}
		after(rep, id, isTransient)
		if !isTransient {
			transient = 0
			continue
		}
		if transient++; transient >= maxTransient {
			r.log.Warn("Open API keeps failing; the rest of this app waits for the next sweep",
				zap.String("app", a.name), zap.String("reason", rep.Reason))
			return false
		}
	}
	return true
}

// candidates lists, per app and in id order, the applicants a sweep checks: the stale
// ones (not APPROVED or REJECTED, last event older than StaleAfter) or, full, all of them;
// minus those an unfinished sweep already checked; plus retry.
func (r *Reconciler) candidates(full bool, now time.Time, prog *Progress, retry map[domain.AppKey][]domain.ApplicantID) (map[domain.AppKey][]domain.ApplicantID, error) {
	out := map[domain.AppKey][]domain.ApplicantID{}
	add := func(st domain.State) {
		key := st.AppKey
		if st.Provider != "" && st.Provider != domain.ProviderAllpass {
			return // Allpass's Open API knows only Allpass's applicants
		}
		if _, ok := r.apps[key]; !ok || prog.Done[key] {
			return
		}
		if after, ok := prog.After[key]; ok && st.ApplicantID <= after {
			return
		}
		out[key] = append(out[key], st.ApplicantID)
	}
	if full {
		err := r.proj.Digests(func(id domain.ApplicantKey, _ domain.Digest) error {
			st, found, err := r.proj.StateOf(id)
			if err != nil {
				return err
			}
			if found {
				add(st)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else {
		cutoff := now.Add(-r.cfg.StaleAfter)
		for _, s := range domain.Statuses() {
			if s == domain.StatusApproved || s == domain.StatusRejected {
				continue
			}
			var cursor domain.ApplicantKey
			for {
				page, next, err := r.proj.ByStatus(s, cursor, 1000)
				if err != nil {
					return nil, err
				}
				for _, st := range page {
					if st.LastEventAt.Before(cutoff) {
						add(st)
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
		}
	}
	for key, ids := range retry {
		if _, ok := r.apps[key]; ok {
			out[key] = append(out[key], ids...)
		}
	}
	for key, ids := range out {
		slices.Sort(ids)
		out[key] = slices.Compact(ids)
	}
	return out, nil
}

// LeaseName is the lease the background sweep holds.
const LeaseName = "reconcile"

// RunOptions configure the background loop.
type RunOptions struct {
	// Holder names this node in the lease (unique per process).
	Holder string
	// LeaseTTL is how long the lease outlives its last renewal (default 30 s); it is
	// renewed every third of it, and a node without it retries as often.
	LeaseTTL time.Duration
	// leaseTried and swept are test hooks, nil in production: leaseTried is called
	// after each attempt to take the lease with Acquire's error, swept after each sweep
	// this node ran while holding it. Tests wait on them instead of sleeping.
	leaseTried func(err error)
	swept      func()
}

// DefaultLeaseTTL: a node that dies hands the sweep over within half a minute.
const DefaultLeaseTTL = 30 * time.Second

// Run is the background sweep of a query node: it takes the lease when it is free and,
// holding it, sweeps every Every (the first sweep at once: a node that takes the lease
// over does not wait for the previous holder's schedule, and resumes its unfinished
// sweep from the saved progress). A sweep is full when FullEvery has passed since the
// last full one. Run returns ctx's error when ctx ends, after releasing the lease with
// the progress saved; it returns nothing else: a bucket or an Open API that fails is
// logged and retried.
func (r *Reconciler) Run(ctx context.Context, leases *eventlog.Leases, opt RunOptions) error {
	if opt.LeaseTTL <= 0 {
		opt.LeaseTTL = DefaultLeaseTTL
	}
	if opt.Holder == "" {
		opt.Holder = domain.NewUUID()
	}
	if r.cfg.Every <= 0 || len(r.order) == 0 || leases == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	retry := opt.LeaseTTL / 3
	for {
		lease, err := leases.Acquire(ctx, LeaseName, opt.Holder, opt.LeaseTTL)
		if opt.leaseTried != nil {
			opt.leaseTried(err)
		}
		switch {
		case err == nil:
			if lease.Prior() != "" && lease.Prior() != opt.Holder {
				r.log.Info("reconcile lease taken over", zap.String("from", lease.Prior()))
			}
			r.hold(ctx, lease, opt.LeaseTTL, opt.swept)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := lease.Release(rctx); err != nil {
				r.log.Warn("reconcile lease not released; it expires on its own", zap.Error(err))
			}
			cancel()
		case errors.Is(err, eventlog.ErrLeaseHeld):
		case ctx.Err() == nil:
			r.log.Warn("reconcile lease bucket not answering", zap.Error(err))
		}
		if clock.Sleep(ctx, retry) != nil {
			return ctx.Err()
		}
	}
}

// hold sweeps while the lease is held, renewing it with the latest progress every third
// of ttl, and returns when ctx ends or the lease is lost. swept (RunOptions.swept) may
// be nil.
func (r *Reconciler) hold(ctx context.Context, lease *eventlog.Lease, ttl time.Duration, swept func()) {
	var prog Progress
	if b := lease.Data(); len(b) > 0 {
		if err := json.Unmarshal(b, &prog); err != nil {
			r.log.Warn("saved sweep progress unreadable; starting afresh", zap.Error(err))
			prog = Progress{}
		}
	}
	if !prog.LastEnd.IsZero() {
		r.setLastSweep(prog.LastEnd)
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu     sync.Mutex
		latest []byte
	)
	setLatest := func(p Progress) {
		b, _ := json.Marshal(p)
		mu.Lock()
		latest = b
		mu.Unlock()
	}
	setLatest(prog)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the renewer: owned by hold, which waits for it
		defer wg.Done()
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		lastOK := time.Now()
		for {
			select {
			case <-hctx.Done():
				mu.Lock()
				b := latest
				mu.Unlock()
				// Saved for the next holder: Release keeps what the last Renew wrote.
				sctx, c := context.WithTimeout(context.WithoutCancel(hctx), 5*time.Second)
				lease.Renew(sctx, b) //nolint:errcheck // best effort; the periodic renewals saved most of it
				c()
				return
			case <-t.C:
			}
			mu.Lock()
			b := latest
			mu.Unlock()
			err := lease.Renew(hctx, b)
			switch {
			case err == nil:
				lastOK = time.Now()
			case errors.Is(err, eventlog.ErrLeaseLost):
				r.log.Warn("reconcile lease lost to another node; sweep stops")
				cancel()
				return
			case time.Since(lastOK) > ttl:
				r.log.Warn("reconcile lease not renewed within its ttl; sweep stops", zap.Error(err))
				cancel()
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	for hctx.Err() == nil {
		full := !prog.Started.IsZero() && prog.Full || prog.Started.IsZero() && r.now().Sub(prog.LastFull) >= r.cfg.FullEvery
		_, err := r.Sweep(hctx, SweepOptions{Full: full, Save: setLatest}, &prog)
		if err != nil && hctx.Err() == nil {
			r.log.Warn("sweep failed; retried at the next period", zap.Error(err))
		}
		setLatest(prog)
		if swept != nil {
			swept()
		}
		if clock.Sleep(hctx, r.cfg.Every) != nil {
			return
		}
	}
}
