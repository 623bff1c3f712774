// Package deploy holds the operator's files (NATS configs, the Dockerfile, Prometheus
// rules, the Grafana dashboard) and no Go code: its tests check those files against the
// service, so every series an alert or a panel reads is one the service exports, and
// every alert fires and stays quiet as its promtool unit tests say.
package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/snapshot"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// pending are series the alerts and dashboard name before the code exports them, the
// names other work is to register; none now. Once a name is registered the test fails
// until it is removed from here, so the list cannot go stale.
var pending = []string{}

// external are series from outside the service: Prometheus's own scrape health, and
// node_exporter's filesystem gauges for the disk alert (the service does not measure
// its disk).
var external = []string{
	"up",
	"node_filesystem_avail_bytes",
	"node_filesystem_size_bytes",
}

// recorder is a Registerer that remembers the name of every metric registered through
// it, from the collectors' descriptions: a vector with no child yet is not gathered, but
// it is described.
type recorder struct {
	*prometheus.Registry
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// nopLog is an ingest event log that is never written: the handler is only built, so its
// metrics are registered.
type nopLog struct{}

func (nopLog) Append(context.Context, *domain.Event, string) (uint64, bool, error) {
	return 0, false, nil
}
func (nopLog) AppendBatch(context.Context, []*domain.Pending) {}
func (nopLog) Prepare(context.Context, *domain.Pending) error { return nil }
func (nopLog) Reject(context.Context, domain.Reject) error    { return nil }
func (nopLog) Rejects(context.Context, uint64, func(domain.Reject) error) error {
	return nil
}

// registered builds the real components with their real constructors on one registry,
// as cmd/kycstate's serve does (process and Go collectors included), and returns every
// metric name registered. Building, not running, is enough: each registers its
// collectors in its constructor. Only the eraser needs a real event log (opened with its
// key ring), so it gets one on an embedded, in-process JetStream server.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	_, err := ingest.NewHandler(ingest.HandlerConfig{
		Apps: []*allpass.App{{Name: "main", AppKey: "71f2c0c6-c720-423b-8df0-7763102ad57e", Method: allpass.MethodCBC,
			Keys: []allpass.Keys{{Secret: [32]byte{1}, HMAC: []byte("hmac-key")}}}},
		Events: nopLog{}, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	projector.New(nil, proj, projector.Config{}, zap.NewNop(), rec)
	if _, err := reconcile.New(reconcile.Config{}, proj, nopLog{}, nil, zap.NewNop(), rec); err != nil {
		t.Fatal(err)
	}
	master, err := eventlog.ParseMasterKey(eventlog.NewMasterKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	srv := jstest.Start(t)
	events := srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: master}}, zap.NewNop())
	if _, err := erase.New(erase.Config{Events: events, Keys: events.Keys(), Rejects: events, Projection: proj, Metrics: rec}); err != nil {
		t.Fatal(err)
	}
	snaps, err := eventlog.OpenSnapshots(t.Context(), srv.Conn(t), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.New(snapshot.Config{Store: snaps, Keys: events.Keys(), Projection: proj, Metrics: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewServer(api.Config{Projection: proj, Metrics: rec, Gatherer: rec.Registry,
		Tokens: []api.Token{{Name: "t", Role: domain.RoleReader, Secret: "secret"}}}); err != nil {
		t.Fatal(err)
	}

	// Cross-check the descriptions with what a scrape gathers.
	fams, err := rec.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if !rec.names[f.GetName()] {
			t.Errorf("gathered %s, which no collector described", f.GetName())
		}
	}
	if len(rec.names) < 20 {
		t.Fatalf("only %d metrics registered: the recorder missed some", len(rec.names))
	}
	return rec.names
}

// exports reports whether name is a series of a registered metric: the metric itself,
// or a histogram's or summary's _bucket, _sum or _count.
func exports(reg map[string]bool, name string) bool {
	if reg[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && reg[base] {
			return true
		}
	}
	return false
}

// PromQL pieces that are not metric names, removed or skipped before reading names.
var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promToken    = regexp.MustCompile(`\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "offset": true, "bool": true, "and": true, "or": true, "unless": true, "inf": true,
		"nan": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names an expression selects. It is a reader of the
// PromQL this directory writes, not a parser of every PromQL: strings, label matchers,
// ranges and grouping clauses are removed, then every identifier that is not a keyword
// and not followed by "(" (a function or an aggregation) is a metric name.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || promKeywords[tok] {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

func TestMetricNamesReader(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="kycstate"} == 0`: {"up"},
		`histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{x=~"$i"}[$__rate_interval]))) > 5`: {"a_seconds_bucket"},
		"max by (instance) (lag) > 0\nand on (instance)\nsum by (instance) (rate(applied_total[10m])) == 0":       {"lag", "applied_total"},
		`sum(rate(x_total{outcome="unavailable"}[5m])) / sum(rate(x_total[5m])) > 1e-2`:                           {"x_total"},
		`node_avail{mountpoint="/data"} / node_size{mountpoint="/data"} < 0.10`:                                   {"node_avail", "node_size"},
		`sum without (code) (rate(req_total{route="a(b)"}[1m]))`:                                                  {"req_total"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", expr, got, want)
		}
	}
}

// alertExprs reads every rule's expression from alerts.yml.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	if len(out) == 0 {
		t.Fatal("no rules in alerts.yml")
	}
	return out
}

// dashboardExprs reads every panel query and template-variable metric of the dashboard.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "kycstate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
			}
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: cannot read %q", v.Name, v.Definition)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(out))
	}
	return out
}

// TestEveryQueryNamesAnExportedSeries is the check section 12 asks for: each series an
// alert or a dashboard panel reads is one the service registers (or a pending or
// external one, listed above with the reason).
func TestEveryQueryNamesAnExportedSeries(t *testing.T) {
	reg := registered(t)
	for _, p := range pending {
		if exports(reg, p) {
			t.Errorf("%s is registered now: remove it from pending", p)
		}
	}
	exprs := alertExprs(t)
	for k, v := range dashboardExprs(t) {
		exprs[k] = v
	}
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used := map[string]bool{}
	for _, k := range keys {
		names := metricNames(exprs[k])
		if len(names) == 0 {
			t.Errorf("%s: no series in %q", k, exprs[k])
		}
		for _, n := range names {
			used[n] = true
			if !exports(reg, n) && !slices.Contains(pending, n) && !slices.Contains(external, n) {
				t.Errorf("%s: %s is not a series the service exports", k, n)
			}
		}
	}
	for _, n := range append(slices.Clone(pending), external...) {
		if !used[n] {
			t.Errorf("%s is listed but no query reads it", n)
		}
	}
}

// TestAlertRulesWithPromtool runs the tool Prometheus operators run: the rules must load
// and every unit test (one firing and one quiet case per alert) must pass. Without
// promtool the test skips, except in CI, where .ci/run installs it.
func TestAlertRulesWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no promtool on PATH; CI must check the alert rules (.ci/run installs Debian's prometheus package)")
		}
		t.Skip("no promtool on PATH (Debian's prometheus package ships it)")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has its two cases.
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range alertExprs(t) {
		name := strings.TrimPrefix(k, "alert ")
		if n := strings.Count(string(b), "alertname: "+name+"\n"); n < 2 {
			t.Errorf("%s: %d cases in alerts_test.yml, want one that fires and one that stays quiet", name, n)
		}
	}
}
