package sim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/reconcile"
)

// The sim's Allpass Open API (DESIGN.md section 10): GET /api/public/applicant/{id}
// answers, for every applicant the sim drives, the status Allpass would hold now, the
// latest status event of its journey the sim has reached (delivered or given up), with
// data sealed with the app's keys exactly as a webhook's.

// truth is what the Open API says about one journey: the index of the latest status
// event reached, -1 before any.
type truth struct {
	j       *journey
	reached atomic.Int32
}

func (t *truth) status() (domain.Status, time.Time, bool) {
	i := t.reached.Load()
	if i < 0 {
		return "", time.Time{}, false
	}
	ev := t.j.events[i]
	s, _ := ev.Type.Target()
	return s, ev.At, true
}

// reach records that the journey got to event i (delivered or given up).
func (t *truth) reach(i int) {
	if t.j.events[i].Type.Class() != domain.ClassStatus {
		return
	}
	for {
		cur := t.reached.Load()
		if int32(i) <= cur || t.reached.CompareAndSwap(cur, int32(i)) {
			return
		}
	}
}

// openAPI serves the truths.
type openAPI struct {
	app   allpass.App
	key   string // the x-private-app-key expected; "" takes any
	mu    sync.RWMutex
	byID  map[domain.ApplicantID]*truth
	calls atomic.Int64
}

func (o *openAPI) add(j *journey) *truth {
	t := &truth{j: j}
	t.reached.Store(-1)
	o.mu.Lock()
	o.byID[j.id] = t
	o.mu.Unlock()
	return t
}

func (o *openAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.calls.Add(1)
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/api/public/applicant/") {
		http.NotFound(w, r)
		return
	}
	if o.key != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(allpass.PrivateKeyHeader)), []byte(o.key)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"status":false,"statusCode":401,"data":null}`)
		return
	}
	id, err := domain.ParseApplicantID(strings.TrimPrefix(r.URL.Path, "/api/public/applicant/"))
	o.mu.RLock()
	t := o.byID[id]
	o.mu.RUnlock()
	var (
		st domain.Status
		at time.Time
		ok bool
	)
	if err == nil && t != nil {
		st, at, ok = t.status()
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"status":false,"statusCode":404,"data":null}`)
		return
	}
	data, _ := json.Marshal(struct {
		ID             domain.ApplicantID    `json:"id"`
		ExternalUserID domain.ExternalUserID `json:"externalUserId"`
		AppKey         domain.AppKey         `json:"appKey"`
		Status         domain.Status         `json:"status"`
		CreatedAt      string                `json:"createdAt"`
		UpdatedAt      string                `json:"updatedAt"`
	}{id, t.j.ext, o.app.AppKey, st, t.j.createdAt.Format(isoMillis), at.Format(isoMillis)})
	body, sig, err := allpass.Seal(o.app.Method, o.app.Keys[0], data, time.Now().UTC().Format(isoMillis), nil)
	if err != nil {
		http.Error(w, "seal", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(allpass.SignatureHeader, sig)
	w.Write(body)
}

// serveOpenAPI serves o on ln until the returned stop is called; stop waits for it.
func serveOpenAPI(ln net.Listener, o *openAPI) (stop func()) {
	srv := &http.Server{Handler: o, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln) //nolint:errcheck // ErrServerClosed on stop
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck // bounded; the sim is ending
		<-done
	}
}

// reconcileAll asks the service to check every applicant it should know against the
// Open API (POST /v1/applicants/{id}/reconcile, auditor token), Concurrency at a time;
// the service paces the calls to its reconcile.rate. It records each result's action
// and returns the highest sequence appended.
func (r *runner) reconcileAll(ctx context.Context, todo []*result, rep *Report) (uint64, error) {
	c, err := client.New(r.cfg.APIURL, r.cfg.ReconcileToken, client.WithHTTPClient(r.client), client.WithUserAgent("kycstate-sim"))
	if err != nil {
		return 0, fmt.Errorf("read API %s: %v", r.cfg.APIURL, err)
	}
	var maxSeq atomic.Uint64
	start := time.Now()
	calls := r.openAPI.calls.Load()
	err = eachOf(ctx, r.cfg.Concurrency, len(todo), func(ctx context.Context, _, i int) error {
		res, _, err := c.Reconcile(ctx, todo[i].id, false)
		if err != nil {
			var e *client.Error
			if errors.As(err, &e) && e.Code == client.CodeReconcileDisabled {
				err = fmt.Errorf("the service does not reconcile: give its app open_api.base_url http://%s (the sim's --open-api)", r.cfg.OpenAPI.Addr())
			}
			return fmt.Errorf("reconcile %s: %w", todo[i].id, err)
		}
		todo[i].reconciled = res.Action
		if res.Error != nil {
			todo[i].reconcileErr = *res.Error
		}
		if res.Seq != nil {
			for {
				old := maxSeq.Load()
				if *res.Seq <= old || maxSeq.CompareAndSwap(old, *res.Seq) {
					break
				}
			}
		}
		return nil
	})
	rep.ReconcileElapsed = time.Since(start)
	rep.OpenAPICalls = int(r.openAPI.calls.Load() - calls)
	if err != nil {
		return 0, err
	}
	rep.Reconciled = map[string]int{}
	for _, res := range todo {
		rep.Reconciled[res.reconciled]++
		if res.reconciled == string(reconcile.ActionError) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("applicant %s: reconcile failed: %s", res.id, res.reconcileErr))
		}
	}
	return maxSeq.Load(), nil
}
