package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/httperr"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// maxRefold bounds the history a point-in-time request folds, so no request reads without
// bound. Allpass sends an applicant dozens of events; this is thousands of times that.
const maxRefold = 100_000

// handleState answers GET /v1/applicants/{id}: the current state, after waiting for
// ?minSeq if asked, or with ?at / ?seq (auditors) the state as known at that moment.
func (s *server) handleState() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		ref, err := parseApplicantRef(q, r.PathValue("id"))
		if err != nil {
			return err
		}
		var keep func(domain.Record) bool // non-nil: point in time
		if q.has("at") || q.has("seq") {
			param := "at"
			if !q.has("at") {
				param = "seq"
			}
			if p, _ := principalFrom(r.Context()); !p.role.Allows(domain.RoleAuditor) {
				return errParam(param, domain.KindForbidden, "point-in-time state needs the auditor role")
			}
			if keep, err = pointInTime(q); err != nil {
				return err
			}
		}
		minSeq, err := q.uint("minSeq", 0)
		if err != nil {
			return err
		}
		if !s.waitFor(r.Context(), w, minSeq) {
			return nil // the client went away while we waited
		}

		st, err := s.find(ref)
		if err != nil {
			return err
		}
		if keep != nil {
			// The applicant is found by its current state, then folded to the moment asked.
			var found bool
			st, found, err = s.stateAt(r.Context(), st.Key(), keep)
			switch {
			case err != nil:
				return err
			case !found:
				return errParam("id", domain.KindNotFound, "applicant "+ref.raw+" had no events by then")
			}
		}
		v, err := s.stateView(r.Context(), st)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	})
}

// pointInTime returns which history records ?at or ?seq keep. Both select a prefix of the
// history in stream order, because the projector applies events in that order: at a given
// moment the service knew a prefix of the log, never a sample of it.
func pointInTime(q query) (func(domain.Record) bool, error) {
	if q.has("at") && q.has("seq") {
		return nil, errParam("at", domain.KindInvalid, "give at or seq, not both")
	}
	if q.has("seq") {
		n, err := parseUint("seq", q.get("seq"))
		if err != nil {
			return nil, err
		}
		return keepUpToSeq(n), nil
	}
	at, err := q.time("at")
	if err != nil {
		return nil, err
	}
	return keepReceivedBy(at), nil
}

// keepUpToSeq keeps the records up to stream sequence n.
func keepUpToSeq(n uint64) func(domain.Record) bool {
	return func(r domain.Record) bool { return r.Seq <= n }
}

// keepReceivedBy keeps the records received by at.
func keepReceivedBy(at time.Time) func(domain.Record) bool {
	return func(r domain.Record) bool { return !r.ReceivedAt.After(at) }
}

// stateAt folds the longest prefix of an applicant's history whose records keep accepts.
func (s *server) stateAt(ctx context.Context, id domain.ApplicantKey, keep func(domain.Record) bool) (domain.State, bool, error) {
	var recs []domain.Record
	var after uint64
	for {
		if err := ctx.Err(); err != nil {
			return domain.State{}, false, domain.E("api.stateAt", domain.KindUnavailable, err)
		}
		page, next, err := s.proj.HistoryOf(id, after, maxLimit)
		if err != nil {
			return domain.State{}, false, err
		}
		for _, r := range page {
			if !keep(r) {
				return refold(recs)
			}
			recs = append(recs, r)
		}
		if len(recs) > maxRefold {
			return domain.State{}, false, errParam("id", domain.KindUnprocessable,
				fmt.Sprintf("history longer than %d events; read it with /history instead", maxRefold))
		}
		if next == 0 || len(page) == 0 {
			return refold(recs)
		}
		after = page[len(page)-1].Seq
	}
}

func refold(recs []domain.Record) (domain.State, bool, error) {
	if len(recs) == 0 {
		return domain.State{}, false, nil
	}
	return domain.NewFolder().Refold(recs), true, nil
}

// waitFor holds the request until the projection has applied seq or the bound (MaxWait)
// passes, and records in X-Kycstate-Seq how far it got. It returns false when the client
// went away: there is then no one to answer.
func (s *server) waitFor(ctx context.Context, w http.ResponseWriter, seq uint64) bool {
	if seq == 0 || s.proj.Checkpoint() >= seq {
		return true
	}
	wctx, cancel := context.WithTimeout(ctx, s.maxWait)
	defer cancel()
	if s.waiting != nil {
		s.waiting(seq)
	}
	setSeq(w, s.proj.WaitFor(wctx, seq))
	return ctx.Err() == nil
}

// atHead holds an action (reconcile, erase) until the projection has applied the log as
// it stood when the request arrived (DESIGN.md section 7): it reads the log's last
// sequence first, then waits for the projection to reach it, both within MaxWait. So an
// applicant whose webhook was answered 200 before this request is found. It returns
// false, having answered nothing, when the client went away; an error when the log
// cannot say its last sequence. behind is the sequence the projection did not reach
// within the bound (0: it did): a lookup that finds nothing then says so, not 404.
func (s *server) atHead(ctx context.Context, w http.ResponseWriter) (behind uint64, ok bool, err error) {
	if s.lastSeq == nil {
		return 0, true, nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.maxWait)
	defer cancel()
	head, err := s.lastSeq(wctx)
	if ctx.Err() != nil {
		return 0, false, nil
	}
	if err != nil {
		s.log.Warn("last sequence of the log not read", zap.Error(err))
		return 0, false, domain.WithPublic(domain.E("api.atHead", domain.KindUnavailable, err), "", "the event log cannot say how far it goes; retry later")
	}
	if head == 0 || s.proj.Checkpoint() >= head {
		return 0, true, nil
	}
	if s.waiting != nil {
		s.waiting(head)
	}
	reached := s.proj.WaitFor(wctx, head)
	setSeq(w, reached)
	if ctx.Err() != nil {
		return 0, false, nil
	}
	if reached < head {
		return head, true, nil
	}
	return 0, true, nil
}

// notFoundAt is the answer to an action on an applicant the projection does not have:
// 404 when the projection had applied the log as it stood at arrival, else 503, since
// the applicant's first event may be in the part not applied yet.
func notFoundAt(behind uint64, msg string) error {
	if behind > 0 {
		return errParam("id", domain.KindUnavailable, fmt.Sprintf(
			"the projection has not applied the log up to seq %d yet, which may hold this applicant; retry later", behind))
	}
	return errParam("id", domain.KindNotFound, msg)
}

// handleHistory answers GET /v1/applicants/{id}/history?after=SEQ&limit=N.
func (s *server) handleHistory() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		ref, err := parseApplicantRef(q, r.PathValue("id"))
		if err != nil {
			return err
		}
		after, err := q.uint("after", 0)
		if err != nil {
			return err
		}
		limit, err := q.limit()
		if err != nil {
			return err
		}
		v, err := s.history(ref, after, limit)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	})
}

// history is one page of an applicant's history, up to limit events after sequence
// after, as the route answers it and the console shows it. Errors: as find.
func (s *server) history(ref applicantRef, after uint64, limit int) (client.History, error) {
	st, err := s.find(ref)
	if err != nil {
		return client.History{}, err
	}
	recs, next, err := s.proj.HistoryOf(st.Key(), after, limit)
	if err != nil {
		return client.History{}, err
	}
	v := client.History{ApplicantID: st.ApplicantID, Provider: providerOf(st.Provider), Events: make([]client.Event, len(recs))}
	for i, rec := range recs {
		v.Events[i] = newEventView(rec)
	}
	if next != 0 && len(recs) > 0 {
		v.Next = uintPtr(recs[len(recs)-1].Seq)
	}
	return v, nil
}

// handleApplicants answers GET /v1/applicants?externalUserId=X[&appKey=K] and
// ?status=S[&cursor=C]: exactly one of externalUserId and status.
func (s *server) handleApplicants() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		limit, err := q.limit()
		if err != nil {
			return err
		}
		byExt, byStatus := q.has("externalUserId"), q.has("status")
		if byExt == byStatus {
			return errParam("externalUserId", domain.KindInvalid, "give exactly one of externalUserId or status")
		}
		if byExt {
			ext := q.get("externalUserId")
			switch {
			case ext == "":
				return errParam("externalUserId", domain.KindInvalid, "must not be empty")
			case len(ext) > maxExtIDBytes:
				return errParam("externalUserId", domain.KindInvalid, fmt.Sprintf("longer than %d bytes", maxExtIDBytes))
			case q.has("cursor"):
				return errParam("cursor", domain.KindInvalid, "pages only a status list; an externalUserId lists its few applicants at once")
			}
			// appKey is an Allpass app's key (a UUID) or another provider's app name
			// (DESIGN.md section 13: a subject token).
			var app string
			if q.has("appKey") {
				if app, err = parseUUID("appKey", q.get("appKey")); err != nil {
					if app = q.get("appKey"); !domain.IsSubjectToken(app) {
						return errParam("appKey", domain.KindInvalid, fmt.Sprintf(
							"must be an Allpass app key (a UUID) or another provider's app name (1 to 64 of A-Z, a-z, 0-9, '_' and '-'), got %s", quote(app)))
					}
				}
			}
			states, err := s.byExternalUserID(r.Context(), domain.ExternalUserID(ext), domain.AppKey(app), limit)
			if err != nil {
				return err
			}
			views, err := s.stateViews(r.Context(), states)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, client.Applicants{Applicants: views})
			return nil
		}

		st, ok := domain.ParseStatus(q.get("status"))
		if !ok {
			return errParam("status", domain.KindInvalid, fmt.Sprintf("must be one of %s, got %s", statusList(), quote(q.get("status"))))
		}
		if q.has("appKey") {
			return errParam("appKey", domain.KindInvalid, "filters only an externalUserId lookup")
		}
		// The cursor is the last applicant's key: its id for Allpass, provider.app.id for
		// the others (DESIGN.md section 13), so a page may end on any provider's.
		var cursor domain.ApplicantKey
		if c := q.get("cursor"); c != "" {
			if cursor, err = domain.ParseApplicantKey(c); err != nil {
				return errParam("cursor", domain.KindInvalid, fmt.Sprintf("must be the next of a previous page, got %s", quote(c)))
			}
		}
		states, next, err := s.proj.ByStatus(st, cursor, limit)
		if err != nil {
			return err
		}
		views, err := s.stateViews(r.Context(), states)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, client.Applicants{Applicants: views, Next: strPtr(next)})
		return nil
	})
}

func statusList() string {
	var b strings.Builder
	for i, st := range domain.Statuses() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(st))
	}
	return b.String()
}

// byExternalUserID finds the applicants of ext (of app, if not empty): those whose id is
// in clear through the clear index, those whose id is sealed through the blind index,
// each blind match checked by opening its id. In applicant key order, at most limit.
func (s *server) byExternalUserID(ctx context.Context, ext domain.ExternalUserID, app domain.AppKey, limit int) ([]domain.State, error) {
	out, err := s.proj.ByExternalUserID(ext, app, limit)
	if err != nil || s.keys == nil {
		return out, err
	}
	blind, err := s.proj.ByExternalUserIndex(func(a domain.AppKey) domain.ExternalUserIndex { return s.keys.Index(a, ext) }, app, limit)
	if err != nil {
		return nil, err
	}
	for _, st := range blind {
		got, err := s.externalUserID(ctx, st.Provider, st.AppKey, st.ApplicantID, "", st.SealedExternalUserID)
		if err != nil {
			return nil, err
		}
		if got != nil && *got == string(ext) {
			st.ExternalUserID = ext
			out = append(out, st)
		}
	}
	// Every provider's applicants (DESIGN.md section 13), each once: two providers may
	// hold the same id, so applicants are told apart by key, not by id.
	slices.SortFunc(out, func(a, b domain.State) int { return strings.Compare(string(a.Key()), string(b.Key())) })
	out = slices.CompactFunc(out, func(a, b domain.State) bool { return a.Key() == b.Key() })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// handleAnomalies answers GET /v1/anomalies?cursor=SEQ&limit=N: irregular events in stream
// order. Every irregular event stays listed; "awaiting review" is the auditor's cursor.
func (s *server) handleAnomalies() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		cursor, err := q.uint("cursor", 0)
		if err != nil {
			return err
		}
		limit, err := q.limit()
		if err != nil {
			return err
		}
		v, err := s.anomalies(r.Context(), cursor, limit)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	})
}

// anomalies is one page of irregular events, up to limit after sequence after, as the
// route answers it and the console shows it: externalUserIds opened.
func (s *server) anomalies(ctx context.Context, after uint64, limit int) (client.Anomalies, error) {
	recs, next, err := s.proj.Anomalies(after, limit)
	if err != nil {
		return client.Anomalies{}, err
	}
	views, err := s.anomalyViews(ctx, recs)
	if err != nil {
		return client.Anomalies{}, err
	}
	v := client.Anomalies{Anomalies: views}
	if next != 0 && len(recs) > 0 {
		v.Next = uintPtr(recs[len(recs)-1].Seq)
	}
	return v, nil
}

// handleChanges answers GET /v1/changes?after=SEQ&limit=N&wait=S: status changes after
// SEQ in stream order, held up to S seconds until there is one.
//
// next is where to continue. Changes are committed with the checkpoint in one transaction,
// in stream order, so once the checkpoint has passed a sequence no change at or below it
// can still appear: when a page is not full, next advances to the checkpoint read before
// the page, and a follower does not rescan the quiet stretch.
func (s *server) handleChanges() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		after, err := q.uint("after", 0)
		if err != nil {
			return err
		}
		limit, err := q.limit()
		if err != nil {
			return err
		}
		waitSec, err := q.uint("wait", 0)
		if err != nil {
			return err
		}
		if waitSec > maxChangesWaitParam {
			return errParam("wait", domain.KindInvalid, fmt.Sprintf("at most %d seconds, got %d", maxChangesWaitParam, waitSec))
		}
		wait := min(time.Duration(waitSec)*time.Second, s.maxChangesWait)
		deadline := time.Now().Add(wait)

		ctx := r.Context()
		for {
			cp := s.proj.Checkpoint()
			changes, err := s.proj.Changes(after, limit)
			if err != nil {
				return err
			}
			if len(changes) > 0 || !time.Now().Before(deadline) {
				next := after
				if n := len(changes); n > 0 {
					next = changes[n-1].Seq
					// The page may hold changes committed after cp was read; a change is
					// committed with the checkpoint that covers it, so the projection has
					// applied at least its seq.
					cp = max(cp, next)
				}
				setSeq(w, cp)
				if len(changes) < limit {
					next = max(next, cp)
				}
				views, err := s.changeViews(ctx, changes)
				if err != nil {
					return err
				}
				writeJSON(w, http.StatusOK, client.Changes{Changes: views, Next: next})
				return nil
			}
			// Nothing yet: sleep until the next commit or the deadline, then look again.
			wctx, cancel := context.WithDeadline(ctx, deadline)
			if s.waiting != nil {
				s.waiting(cp + 1)
			}
			reached := s.proj.WaitFor(wctx, cp+1)
			timedOut := wctx.Err() != nil
			cancel()
			if ctx.Err() != nil {
				return nil // the client went away; no one to answer
			}
			if reached <= cp && !timedOut {
				// WaitFor gave up without a commit: the projection is closing.
				return domain.Public("api.changes", domain.KindUnavailable, "", "the projection is closed; retry later or on another node")
			}
		}
	})
}

// handleVerify answers GET /v1/verify: the log folded afresh up to the projection's
// checkpoint and compared with the projection, every difference listed (projection.Verify).
//
// It reads the whole log, so it is bounded by verifyTimeout (503 past it), runs one at a
// time per node (409 while another runs: two would only halve each other's speed), and
// moves this request's write deadline past its bound, because the server's WriteTimeout
// is sized for the short routes and would cut the answer.
func (s *server) handleVerify() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.verifyTimeout + writeMargin))
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Warn("verify: cannot extend the write deadline", zap.Error(err))
		}
		start := time.Now()
		res, err := s.runVerify(r.Context())
		switch {
		case r.Context().Err() != nil:
			return nil // the client went away; no one to answer
		case err != nil:
			return err
		}
		p, _ := principalFrom(r.Context())
		s.log.Info("verified", zap.String("token", p.name), zap.Uint64("checkpoint", res.Checkpoint),
			zap.Uint64("events", res.Events), zap.Int("differences", len(res.Differences)),
			zap.Uint64("unauthenticated", res.Unauthenticated),
			zap.Duration("took", time.Since(start)))
		setSeq(w, res.Checkpoint)
		writeJSON(w, http.StatusOK, newVerifyView(res))
		return nil
	})
}

// runVerify runs s.verify for GET /v1/verify and the console: one at a time per node, and
// within verifyTimeout. Errors: 404 verify_disabled on a node without an event log, 409
// while another runs, 503 past the bound.
func (s *server) runVerify(ctx context.Context) (domain.VerifyResult, error) {
	if s.verify == nil {
		return domain.VerifyResult{}, errCode("verify", domain.KindNotFound, client.CodeVerifyDisabled, "this node does not verify: it was started without an event log to compare with")
	}
	select {
	case s.verifying <- struct{}{}:
		defer func() { <-s.verifying }()
	default:
		return domain.VerifyResult{}, errParam("verify", domain.KindConflict, "a verify is already running on this node; ask again when it has answered")
	}
	vctx, cancel := context.WithTimeout(ctx, s.verifyTimeout)
	defer cancel()
	res, err := s.verify(vctx)
	if err != nil && vctx.Err() != nil && ctx.Err() == nil {
		return domain.VerifyResult{}, errParam("verify", domain.KindUnavailable, fmt.Sprintf(
			"did not finish within %s; verify a log this long offline (kycstate verify on a stopped node's data dir)", s.verifyTimeout))
	}
	return res, err
}

// handleReconcile answers POST /v1/applicants/{id}/reconcile: this applicant checked
// against Allpass's Open API now, the Open API's status appended if it differs
// (?dryRun=true: compared only), and the check's report. A failed check is a 200 whose
// report says what failed: the report is the answer, and the node did what it could.
func (s *server) handleReconcile() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseQuery(r)
		if err != nil {
			return err
		}
		// Any provider's id (DESIGN.md section 13): the reconciler finds whose it is.
		ref, err := parseApplicantRef(q, r.PathValue("id"))
		if err != nil {
			return err
		}
		id := ref.raw
		dryRun := false
		if q.has("dryRun") {
			if dryRun, err = strconv.ParseBool(q.get("dryRun")); err != nil {
				return errParam("dryRun", domain.KindInvalid, "must be true or false")
			}
		}
		if s.reconcile == nil {
			return errCode("reconcile", domain.KindNotFound, client.CodeReconcileDisabled,
				"this node does not reconcile: no app has open_api configured")
		}
		behind, ok, err := s.atHead(r.Context(), w)
		if !ok {
			return err
		}
		var rep reconcile.Report
		if ref.provider == "" {
			// Allpass first, else the one other provider's: as the read routes resolve it.
			rep, err = s.reconcile(r.Context(), domain.ApplicantID(id), dryRun)
		} else {
			// ?provider= names whose: found here as the read routes find it, then
			// checked by its key.
			st, found, lerr := s.lookup(ref)
			switch {
			case lerr != nil:
				return lerr
			case !found:
				return notFoundAt(behind, fmt.Sprintf("kycstate has no events of %s applicant %s", ref.provider, id))
			case s.reconcileKey == nil:
				return errCode("reconcile", domain.KindNotFound, client.CodeReconcileDisabled,
					"this node does not reconcile applicants named by provider: no app has open_api or api configured")
			}
			rep, err = s.reconcileKey(r.Context(), st.Key(), dryRun)
		}
		switch {
		case r.Context().Err() != nil:
			return nil // the client went away
		case domain.KindOf(err) == domain.KindNotFound:
			return notFoundAt(behind, "kycstate has no events of this applicant")
		case err != nil:
			return err
		}
		p, _ := principalFrom(r.Context())
		s.log.Info("reconciled", zap.String("token", p.name), zap.String("provider", string(ref.provider)), zap.String("applicantId", id),
			zap.String("action", string(rep.Action)), zap.Bool("dryRun", dryRun))
		writeJSON(w, http.StatusOK, NewReconcileView(rep))
		return nil
	})
}

func (s *server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, client.Health{Status: "ok"})
	})
}

// handleReadyz answers 200 when cfg.Ready does within its time, else 503. The route
// needs no token, so the 503 says only what is checked; why it failed is logged.
func (s *server) handleReadyz() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		if s.ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err := s.ready(ctx)
			cancel()
			if err != nil {
				s.log.Warn("not ready", zap.Error(err))
				return &domain.Error{Op: "ready", Kind: domain.KindUnavailable, Err: err,
					Message: "not ready: the event log is unreachable or the projector has not caught up; the service's log says which"}
			}
		}
		writeJSON(w, http.StatusOK, client.Health{Status: "ready"})
		return nil
	})
}

func (s *server) handleMetrics() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// handleNotFound answers every request no route takes: 405 (with Allow) when the path
// exists for GET, else 404; both in the API's JSON error form.
func (s *server) handleNotFound() http.Handler {
	return s.errs.Handle(func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			probe := r.Clone(r.Context())
			probe.Method = http.MethodGet
			if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
				httperr.MethodNotAllowed(w, "GET, HEAD", r.Method+" "+strings.TrimPrefix(pattern, "GET ")+": only GET and HEAD")
				return nil
			}
		}
		// The actions (reconcile, erase) are POST only: another method on their path is
		// a 405 naming POST, not an unknown path.
		if r.Method != http.MethodPost {
			probe := r.Clone(r.Context())
			probe.Method = http.MethodPost
			if _, pattern := s.mux.Handler(probe); strings.HasPrefix(pattern, "POST ") {
				httperr.MethodNotAllowed(w, "POST", r.Method+" "+strings.TrimPrefix(pattern, "POST ")+": only POST")
				return nil
			}
		}
		return errParam("path", domain.KindNotFound, "no route "+quote(r.URL.Path))
	})
}
