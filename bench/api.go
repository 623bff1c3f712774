package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	apiConns   = 32
	apiIDs     = 2_000 // distinct applicants the GETs rotate over
	readerTok  = "bench-reader-token-0123456789abcdef"
	auditorTok = "bench-auditor-token-0123456789abcdef"
)

// phaseAPI measures GET /v1/applicants/{id} through api.NewServer (auth, routing,
// metrics, a bbolt read, encoding) behind api.NewHTTPServer, beside a bare net/http
// handler on the same route pattern that serves the same bytes and headers after the
// same constant-time token check, both over loopback with 32 keep-alive connections.
// Every answer is checked against the expected bytes on both sides. Rounds alternate
// the two sides so that drift of the machine falls on both.
func phaseAPI(ctx context.Context, o options, r *result) error {
	nEvents, reqs, rounds := 200_000, 240_000, 8
	if o.Quick {
		nEvents, reqs, rounds = 50_000, 48_000, 4
	}
	dir, err := phaseDir(o, "api")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "projection.db")
	c, events, err := openLog(ctx, filepath.Join(dir, "keys"), true, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	ids, err := buildProjection(ctx, events.Keys(), o, path, nEvents)
	if err != nil {
		return err
	}
	proj, err := projection.Open(path, projection.Options{})
	if err != nil {
		return err
	}
	defer proj.Close()
	h, err := api.NewServer(api.Config{Projection: proj, Logger: newLogger(), Metrics: prometheus.NewRegistry(),
		Tokens: []api.Token{{Name: "product", Role: domain.RoleReader, Secret: readerTok},
			{Name: "audit", Role: domain.RoleAuditor, Secret: auditorTok}}, Keys: events.Keys()})
	if err != nil {
		return err
	}
	realURL, stopReal, err := serve(api.NewHTTPServer("127.0.0.1:0", h), "api")
	if err != nil {
		return err
	}
	defer stopReal()
	client := keepAliveClient(apiConns)
	defer client.CloseIdleConnections()

	// What the real server answers for each applicant is what the bare one serves.
	if len(ids) > apiIDs {
		ids = ids[:apiIDs]
	}
	want := make(map[string]answer, len(ids))
	for _, id := range ids {
		a, err := get(ctx, client, realURL+"/v1/applicants/"+string(id))
		if err != nil {
			return err
		}
		want[string(id)] = a
	}
	bareURL, stopBare, err := serve(&http.Server{Handler: bareHandler(want), ReadHeaderTimeout: 5 * time.Second}, "bare")
	if err != nil {
		return err
	}
	defer stopBare()

	// Warm both: connections open, pages mapped.
	for _, u := range []string{bareURL, realURL} {
		if _, _, err := getAll(ctx, client, u, ids, wantBody(want), apiConns*50); err != nil {
			return err
		}
	}
	var ours, bare time.Duration
	var oursLat, bareLat []time.Duration
	var pairs []float64
	for k := range rounds {
		half := reqs / rounds
		bTook, lat, err := getAll(ctx, client, bareURL, ids, wantBody(want), half)
		if err != nil {
			return err
		}
		bare, bareLat = bare+bTook, append(bareLat, lat...)
		stopProf, err := profile(o, fmt.Sprintf("api-%d", k))
		if err != nil {
			return err
		}
		took, lat, err := getAll(ctx, client, realURL, ids, wantBody(want), half)
		if perr := stopProf(); perr != nil && err == nil {
			err = perr
		}
		if err != nil {
			return err
		}
		ours, oursLat = ours+took, append(oursLat, lat...)
		pairs = append(pairs, bTook.Seconds()/took.Seconds())
	}
	reqs = reqs / rounds * rounds
	oursRate, bareRate := float64(reqs)/ours.Seconds(), float64(reqs)/bare.Seconds()
	r.set("requests", float64(reqs))
	r.set("events", float64(nEvents))
	r.set("rate", oursRate)
	r.set("bare_rate", bareRate)
	// As for ingest: the median of the rounds' ratios, the totals' ratio beside it.
	r.set("ratio", median(pairs))
	r.set("ratio_min", slices.Min(pairs))
	r.set("ratio_max", slices.Max(pairs))
	r.set("ratio_totals", oursRate/bareRate)
	r.set("rounds", float64(rounds))
	r.set("p50_ms", ms(percentile(oursLat, 0.5)))
	r.set("p99_ms", ms(percentile(oursLat, 0.99)))
	r.set("bare_p50_ms", ms(percentile(bareLat, 0.5)))
	r.set("bare_p99_ms", ms(percentile(bareLat, 0.99)))
	var size int
	for _, a := range want {
		size += len(a.body)
	}
	r.set("body_bytes", float64(size)/float64(len(want)))
	return nil
}

// buildProjection writes a projection of n generated events with projection.NewBuilder (the
// events sealed and opened as ingest does, encoded as the log stores them) and returns
// the applicants in it.
func buildProjection(ctx context.Context, ring *eventlog.Keyring, o options, path string, n int) ([]domain.ApplicantID, error) {
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed+3, app, 2_000)
	b, err := projection.NewBuilder(path, ring)
	if err != nil {
		return nil, err
	}
	seen := map[domain.ApplicantID]bool{}
	var ids []domain.ApplicantID
	var seq uint64
	const chunk = 10_000
	for done := 0; done < n; done += chunk {
		ds := make([]delivery, min(chunk, n-done))
		for i := range ds {
			ds[i] = w.next()
		}
		st, err := storedEvents(ctx, ring, app, ds)
		if err != nil {
			b.Abort()
			return nil, err
		}
		evs := make([]domain.Event, len(st))
		for i := range st {
			seq++
			if evs[i], err = eventlog.DecodeEvent(seq, st[i].data); err != nil {
				b.Abort()
				return nil, err
			}
			if id := evs[i].ApplicantID; !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if err := b.Add(evs); err != nil {
			b.Abort()
			return nil, err
		}
	}
	return ids, b.Finish()
}

// answer is a response's bytes and the headers the API sets.
type answer struct {
	header http.Header
	body   []byte
}

// bareHandler serves want by applicant id after the API's token check: the SHA-256 of
// the presented token compared in constant time with every configured token's, without
// stopping at a match.
func bareHandler(want map[string]answer) http.Handler {
	sums := [][sha256.Size]byte{sha256.Sum256([]byte(readerTok)), sha256.Sum256([]byte(auditorTok))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/applicants/{id}", func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		found := 0
		for i := range sums {
			found |= subtle.ConstantTimeCompare(sum[:], sums[i][:])
		}
		if found == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		a, ok := want[r.PathValue("id")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		h := w.Header()
		for k, v := range a.header {
			h[k] = v
		}
		w.WriteHeader(http.StatusOK)
		w.Write(a.body)
	})
	return mux
}

// get fetches one applicant with the reader token.
func get(ctx context.Context, client *http.Client, url string) (answer, error) {
	var buf bytes.Buffer
	resp, err := doGet(ctx, client, url, &buf)
	if err != nil {
		return answer{}, err
	}
	h := http.Header{}
	for _, k := range []string{"Content-Type", "Cache-Control", "X-Content-Type-Options", api.SeqHeader} {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	return answer{header: h, body: bytes.Clone(buf.Bytes())}, nil
}

func doGet(ctx context.Context, client *http.Client, url string, buf *bytes.Buffer) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+readerTok)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	err = readBody(resp.Body, buf)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, buf.Bytes())
	}
	return resp, nil
}

// getAll sends n GETs over apiConns connections, rotating over ids, and checks every
// body with check. It returns the wall time and each request's latency.
func getAll(ctx context.Context, client *http.Client, base string, ids []domain.ApplicantID, check func(id string, body []byte) error, n int) (time.Duration, []time.Duration, error) {
	var next atomic.Int64
	lats := make([][]time.Duration, apiConns)
	errs := newErrFirst()
	var wg sync.WaitGroup
	start := time.Now()
	for c := range apiConns {
		wg.Go(func() {
			labelGoroutine(ctx, "client")
			var buf bytes.Buffer
			lats[c] = make([]time.Duration, 0, n/apiConns+1)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				id := string(ids[i%len(ids)])
				t0 := time.Now()
				if _, err := doGet(ctx, client, base+"/v1/applicants/"+id, &buf); err != nil {
					errs.put(err)
					return
				}
				lats[c] = append(lats[c], time.Since(t0))
				if err := check(id, buf.Bytes()); err != nil {
					errs.put(err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errs.err(); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return took, all, nil
}

// wantBody checks that a GET's body is the one expected for its id, byte for byte.
func wantBody(want map[string]answer) func(id string, body []byte) error {
	return func(id string, body []byte) error {
		if !bytes.Equal(body, want[id].body) {
			return fmt.Errorf("GET %s: body differs from the expected one", id)
		}
		return nil
	}
}
