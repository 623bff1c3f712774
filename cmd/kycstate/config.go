package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.yaml.in/yaml/v3"
)

// Config is the YAML file of DESIGN.md section 8. Every key can be overridden by an
// environment variable: the key path in upper case joined by "_" after KYCSTATE_, with list
// elements by index (KYCSTATE_NATS_URL, KYCSTATE_APPS_0_SECRET_KEY). A list of strings can
// also be given whole, comma-separated (KYCSTATE_KEYS_PREVIOUS=env:OLD1,env:OLD2).
type Config struct {
	DataDir   string          `yaml:"data_dir"`
	Log       LogConfig       `yaml:"log"`
	NATS      NATSConfig      `yaml:"nats"`
	Ingest    IngestConfig    `yaml:"ingest"`
	API       APIConfig       `yaml:"api"`
	Projector ProjectorConfig `yaml:"projector"`
	Apps      []AppConfig     `yaml:"apps"`
	Keys      KeysConfig      `yaml:"keys"`
	Retention RetentionConfig `yaml:"retention"`
	Reconcile ReconcileConfig `yaml:"reconcile"`
}

// KeysConfig is the master key of the data-key ring (DESIGN.md section 11).
type KeysConfig struct {
	// Master wraps every applicant's data key: 32 bytes, 64 hex characters or base64.
	// serve without it uses one generated under data_dir (development); ingest and
	// query nodes refuse to start without it. Every node of a cluster needs the same.
	Master Secret `yaml:"master"`
	// Previous are older master keys, still unwrapping what they wrapped, after a
	// rotation and until "kycstate keys rewrap" has run.
	Previous []Secret `yaml:"previous"`
}

// RetentionConfig is the retention sweep of query nodes.
type RetentionConfig struct {
	// EraseAfter erases applicants whose last event is older than this (e.g. 43800h,
	// five years); 0 (the default) switches retention off.
	EraseAfter Duration `yaml:"erase_after"`
	// Every is how often the sweep runs, default 1h.
	Every Duration `yaml:"every"`
}

// ReconcileConfig is the reconciliation with Allpass's Open API (DESIGN.md section 10).
type ReconcileConfig struct {
	// Every is the background sweep's period on query nodes (serve included); 0 switches
	// the sweep off (POST /v1/applicants/{id}/reconcile and kycstate reconcile still work).
	Every Duration `yaml:"every"`
	// StaleAfter: applicants not APPROVED/REJECTED whose last event is older are checked.
	StaleAfter Duration `yaml:"stale_after"`
	// FullEvery: every applicant is checked once in this period.
	FullEvery Duration `yaml:"full_every"`
	// Rate is the most Open API calls per second per app.
	Rate float64 `yaml:"rate"`
}

// OpenAPIConfig is an app's Allpass Open API.
type OpenAPIConfig struct {
	BaseURL    string   `yaml:"base_url"`    // Allpass's API host; empty: no reconciliation for this app
	PrivateKey Secret   `yaml:"private_key"` // sent as x-private-app-key
	Timeout    Duration `yaml:"timeout"`     // one call, body included; default 10s
}

type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json (default) or console
}

type NATSConfig struct {
	// URL of an external NATS; several for a cluster, comma-separated. Empty: embedded.
	URL      string `yaml:"url"`
	Replicas int    `yaml:"replicas"`
	// Listen lets the embedded server accept clients on a TCP address; empty: no port.
	Listen string `yaml:"listen"`
	// SyncInterval of the embedded server: "always" (default, fsync every write) or a duration.
	SyncInterval string `yaml:"sync_interval"`
	// DuplicateWindow of the stream, default 24h.
	DuplicateWindow Duration `yaml:"duplicate_window"`
	// RejectsMaxBytes bounds KYC_REJECTS (oldest dropped first). JetStream reserves it on
	// disk when the stream is created, so it also sets the least free disk serve needs.
	RejectsMaxBytes int64 `yaml:"rejects_max_bytes"`
	// RejectsMaxAge is how long KYC_REJECTS keeps a refused webhook (default 7 days):
	// the bodies hold personal data. Applied to an existing stream too.
	RejectsMaxAge Duration `yaml:"rejects_max_age"`
}

type IngestConfig struct {
	Listen      string `yaml:"listen"`
	MaxBody     int64  `yaml:"max_body"`
	MaxInFlight int    `yaml:"max_in_flight"`
	// QueueWait is how long a request past max_in_flight waits for a slot before 503.
	QueueWait     Duration `yaml:"queue_wait"`
	AppendTimeout Duration `yaml:"append_timeout"`
	// KeepRaw keeps the original body and signature in each stored event so auditors can
	// re-verify authenticity offline. Default true.
	KeepRaw *bool `yaml:"keep_raw"`
}

type APIConfig struct {
	Listen  string        `yaml:"listen"`
	Tokens  []TokenConfig `yaml:"tokens"`
	MaxWait Duration      `yaml:"max_wait"`
	// ReadyLag is how many sequences behind the log the projection may be and still be ready.
	ReadyLag uint64 `yaml:"ready_lag"`
}

type TokenConfig struct {
	Name  string `yaml:"name"`
	Role  string `yaml:"role"`
	Token Secret `yaml:"token"`
}

type ProjectorConfig struct {
	Batch     int      `yaml:"batch"`
	BatchWait Duration `yaml:"batch_wait"`
}

type AppConfig struct {
	Name      string `yaml:"name"`
	AppKey    string `yaml:"app_key"`
	Method    string `yaml:"method"`
	SecretKey Secret `yaml:"secret_key"`
	HMACKey   Secret `yaml:"hmac_key"`
	// PreviousKeys are older generations still accepted (key rotation), newest first.
	PreviousKeys []KeyConfig `yaml:"previous_keys"`
	// OpenAPI enables reconciliation of this app's applicants.
	OpenAPI OpenAPIConfig `yaml:"open_api"`
}

type KeyConfig struct {
	SecretKey Secret `yaml:"secret_key"`
	HMACKey   Secret `yaml:"hmac_key"`
}

// Secret is a config value given literally, as env:NAME or as file:PATH. It never prints.
type Secret string

func (Secret) String() string   { return "[secret]" }
func (Secret) GoString() string { return "[secret]" }

// Duration reads "5s" or "1m" in YAML and env.
type Duration time.Duration

const notDuration = "not a duration (like 5s or 2m)"

// UnmarshalText reads the environment's form. The error holds no value: a value in the
// wrong variable may be a secret.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return errors.New(notDuration)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads the file's form. Its error is a *yaml.TypeError, so it carries the
// line, as yaml's own type errors do, and lets the decoder go on to report other keys.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if v, err := time.ParseDuration(n.Value); err == nil {
			*d = Duration(v)
			return nil
		}
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, notDuration)}}
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// configError names the key and what is wrong; it never holds a secret's value.
type configError struct{ key, msg string }

func (e *configError) Error() string { return "config: " + e.key + ": " + e.msg }

func cfgErr(key, format string, args ...any) error {
	return &configError{key: key, msg: fmt.Sprintf(format, args...)}
}

// defaultConfig is what runs with no file at all. Where a package has a default, it is
// read from that package, so the two cannot drift; the listen addresses, the log and the
// readiness bound are the binary's own.
func defaultConfig() Config {
	return Config{
		DataDir: "./data",
		Log:     LogConfig{Level: "info", Format: "json"},
		NATS: NATSConfig{Replicas: 1, SyncInterval: "always",
			DuplicateWindow: Duration(eventlog.DefaultDuplicateWindow), RejectsMaxBytes: eventlog.DefaultRejectsMaxBytes,
			RejectsMaxAge: Duration(eventlog.DefaultRejectsMaxAge)},
		Ingest: IngestConfig{Listen: ":8080", MaxBody: ingest.DefaultMaxBody, MaxInFlight: ingest.DefaultMaxInFlight,
			QueueWait: Duration(ingest.DefaultQueueWait), AppendTimeout: Duration(ingest.DefaultAppendTimeout)},
		API: APIConfig{Listen: "127.0.0.1:8081", MaxWait: Duration(api.DefaultMaxWait), ReadyLag: 1000},
		Projector: ProjectorConfig{Batch: projector.DefaultMaxBatch,
			BatchWait: Duration(projector.DefaultMaxWait)},
		Retention: RetentionConfig{Every: Duration(erase.DefaultSweepEvery)},
		Reconcile: ReconcileConfig{Every: Duration(reconcile.DefaultEvery), StaleAfter: Duration(reconcile.DefaultStaleAfter),
			FullEvery: Duration(reconcile.DefaultFullEvery), Rate: reconcile.DefaultRate},
	}
}

// loadConfig reads path (if not empty) over the defaults, then applies KYCSTATE_* overrides.
func loadConfig(path string, getenv func(string) string, environ []string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err == nil && len(doc.Content) == 1 {
			if line, problem := fileProblem(doc.Content[0], reflect.TypeFor[Config](), ""); line != 0 {
				return cfg, fmt.Errorf("config %s: line %d: %s", path, line, problem)
			}
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("config %s: %s", path, yamlMessage(err))
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// fileProblem walks a YAML node alongside the config type t and returns the line of the
// first key t does not have, or of the first value that does not fit its key's type, and
// what is wrong, with the key's dotted path (apps[0].open_api.privat_key); line 0 when all
// is well. yaml's own messages name only the Go type a key was not found in, and for a
// value the line but not the key (which a flow mapping, ingest: {max_body: abc,
// max_in_flight: 7}, leaves ambiguous) and they quote the value, which may be a secret:
// what a value must be comes from the type here, so no value is shown.
func fileProblem(n *yaml.Node, t reflect.Type, path string) (line int, problem string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if path != "" {
				key = path + "." + k.Value
			}
			f, ok := fieldByYAMLKey(t, k.Value)
			if !ok {
				return k.Line, "unknown key " + key
			}
			if line, problem := fileProblem(v, f.Type, key); line != 0 {
				return line, problem
			}
		}
		return 0, ""
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, v := range n.Content {
			if line, problem := fileProblem(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); line != 0 {
				return line, problem
			}
		}
		return 0, ""
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		if path == "" {
			return n.Line, "the file must be " + typeWant(t)
		}
		return n.Line, path + ": must be " + typeWant(t)
	}
	return 0, ""
}

// typeWant says what a value of config type t looks like.
func typeWant(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "a duration (like 5s or 2m)"
	case t.Kind() == reflect.Struct:
		return "a mapping of keys"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Uint64:
		return "a non-negative integer"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "an integer"
	}
	return "a string"
}

func fieldByYAMLKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name := strings.Split(f.Tag.Get("yaml"), ",")[0]; name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlMessage keeps yaml's line-numbered message but drops quoted values, which may be secrets.
func yamlMessage(err error) string {
	msg := err.Error()
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		if i := strings.Index(line, "`"); i >= 0 {
			line = line[:i] + "(value not shown)"
		}
		out = append(out, strings.TrimSpace(line))
	}
	return strings.Join(out, "; ")
}

// applyEnv sets every KYCSTATE_<PATH> variable onto the matching key. Variables apply in
// name order, whatever order the environment holds them in, so a whole list
// (KYCSTATE_KEYS_PREVIOUS) comes before an index into it (KYCSTATE_KEYS_PREVIOUS_2).
func applyEnv(cfg *Config, environ []string) error {
	environ = slices.Clone(environ)
	slices.SortStableFunc(environ, func(a, b string) int {
		a, _, _ = strings.Cut(a, "=")
		b, _, _ = strings.Cut(b, "=")
		return strings.Compare(a, b)
	})
	st := envState{fillers: map[string]filler{}, set: map[string]bool{}}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "KYCSTATE_") {
			continue
		}
		path := strings.ToLower(strings.TrimPrefix(name, "KYCSTATE_"))
		if !isConfigKey(path) {
			// Not ours: a secret that a config value names with env:, say.
			continue
		}
		if err := setPath(reflect.ValueOf(cfg).Elem(), path, "", val, name, &st); err != nil {
			return err
		}
	}
	return st.gap()
}

// envState is what applyEnv learns across variables: the list elements that an index
// created only to reach itself, and the elements some variable set.
type envState struct {
	fillers map[string]filler // by element path, apps[3]
	set     map[string]bool
}

type filler struct {
	list         string // apps[0].previous_keys
	index        int    // the filler's
	envName      string // the variable whose index made it
	envNameIndex int    // that variable's index
}

// gap returns an error for a filler no variable set: the list would have a zero element
// there, which resolveConfig would report under a name the user never wrote. Checked after
// every variable, since KYCSTATE_APPS_2_NAME may come before KYCSTATE_APPS_1_NAME.
func (st *envState) gap() error {
	var gaps []filler
	for p, f := range st.fillers {
		if !st.set[p] {
			gaps = append(gaps, f)
		}
	}
	if len(gaps) == 0 {
		return nil
	}
	f := slices.MinFunc(gaps, func(a, b filler) int {
		if c := strings.Compare(a.list, b.list); c != 0 {
			return c
		}
		return a.index - b.index
	})
	return cfgErr(f.envName, "index %d leaves a gap in %s: the next index is %d", f.envNameIndex, f.list, f.index)
}

// isConfigKey reports whether path starts with a top-level config key. Variables under a
// known key must match a key exactly (a typo is an error); others are left alone.
func isConfigKey(path string) bool {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if path == key || strings.HasPrefix(path, key+"_") {
			return true
		}
	}
	return false
}

// setPath walks path ("apps_0_secret_key") through v's yaml keys and sets the leaf; key is
// the dotted path walked so far (apps[0]), for envState.
func setPath(v reflect.Value, path, key, val, envName string, st *envState) error {
	for path != "" {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
			continue
		case reflect.Struct:
			i, rest, ok := fieldByEnvPath(v.Type(), path)
			if !ok {
				return cfgErr(envName, "no such config key")
			}
			name := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
			if key != "" {
				name = key + "." + name
			}
			v, path, key = v.Field(i), rest, name
			continue
		case reflect.Slice:
			idxStr, rest, _ := strings.Cut(path, "_")
			idx, err := strconv.Atoi(idxStr)
			if err != nil || idx < 0 || idx > 64 {
				return cfgErr(envName, "list index must be a number from 0 to 64")
			}
			for v.Len() < idx {
				st.fillers[fmt.Sprintf("%s[%d]", key, v.Len())] = filler{list: key, index: v.Len(), envName: envName, envNameIndex: idx}
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			}
			if v.Len() == idx {
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			}
			key = fmt.Sprintf("%s[%d]", key, idx)
			st.set[key] = true
			v, path = v.Index(idx), rest
			continue
		}
		return cfgErr(envName, "no such config key")
	}
	return setLeaf(v, val, envName)
}

// fieldByEnvPath finds the field of struct type t that path ("batch_wait", "apps_0_name")
// starts with: a key equal to path, else the longest key followed by "_", so batch_wait
// is not read as batch. It returns the field's index and the rest of path.
func fieldByEnvPath(t reflect.Type, path string) (int, string, bool) {
	best, bestLen := -1, 0
	for i := range t.NumField() {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if path == key {
			return i, "", true
		}
		if strings.HasPrefix(path, key+"_") && len(key) > bestLen {
			best, bestLen = i, len(key)
		}
	}
	if best < 0 {
		return 0, "", false
	}
	return best, path[bestLen+1:], true
}

// setLeaf sets v from one variable's value, parsed as v's type.
func setLeaf(v reflect.Value, val, envName string) error {
	if v.Kind() == reflect.Pointer {
		// Set like the element; the pointer is only how the file tells unset from false.
		p := reflect.New(v.Type().Elem())
		if err := setLeaf(p.Elem(), val, envName); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
			if err := u.UnmarshalText([]byte(val)); err != nil {
				return cfgErr(envName, "%v", err)
			}
			return nil
		}
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(val)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return cfgErr(envName, "not an integer")
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return cfgErr(envName, "not a number")
		}
		v.SetFloat(f)
	case reflect.Uint64:
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return cfgErr(envName, "not a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return cfgErr(envName, "not true or false")
		}
		v.SetBool(b)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return cfgErr(envName, "is a list of mappings: set its elements by index, like %s",
				firstKeyEnv(envName+"_0", v.Type().Elem()))
		}
		if v.Type().Elem().Kind() != reflect.String {
			return cfgErr(envName, "cannot be set from the environment")
		}
		// A whole list, comma-separated, replacing the file's; empty is the empty list.
		l := reflect.MakeSlice(v.Type(), 0, 0)
		if val != "" {
			for i, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s == "" {
					return cfgErr(envName, "element %d of the comma-separated list is empty", i)
				}
				e := reflect.New(v.Type().Elem()).Elem()
				e.SetString(s)
				l = reflect.Append(l, e)
			}
		}
		v.Set(l)
	case reflect.Struct:
		return cfgErr(envName, "is a mapping: set its keys, like %s", firstKeyEnv(envName, v.Type()))
	default:
		return cfgErr(envName, "cannot be set from the environment")
	}
	return nil
}

// firstKeyEnv names the variable of struct type t's first key under prefix, for examples.
func firstKeyEnv(prefix string, t reflect.Type) string {
	return prefix + "_" + strings.ToUpper(strings.Split(t.Field(0).Tag.Get("yaml"), ",")[0])
}

// resolve returns the secret's value: literal, env:NAME or file:PATH. Errors name the key
// and the variable or file, never the value.
func (s Secret) resolve(key string, getenv func(string) string) (string, error) {
	v := string(s)
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		val := getenv(name)
		if val == "" {
			return "", cfgErr(key, "environment variable %s is empty or unset", name)
		}
		return val, nil
	case strings.HasPrefix(v, "file:"):
		p := strings.TrimPrefix(v, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			return "", cfgErr(key, "cannot read secret file %s: %v", p, errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	}
	return v, nil
}

// Resolved is the configuration with secrets read and keys parsed.
type Resolved struct {
	Config
	Apps   []*allpass.App
	Tokens []resolvedToken
	// OpenAPIs are the apps with open_api configured, for reconciliation.
	OpenAPIs []reconcile.App
	URLs     []string
	Sync     time.Duration // 0: fsync every write
	// Keys are keys.master and keys.previous, nil when keys.master is not set.
	Keys *eventlog.MasterKeys
}

type resolvedToken struct{ Name, Role, Secret string }

// resolve validates cfg and reads its secrets. needApps / needTokens say what the mode uses.
func resolveConfig(cfg Config, getenv func(string) string, needApps, needTokens bool) (*Resolved, error) {
	r := &Resolved{Config: cfg}
	if cfg.DataDir == "" {
		return nil, cfgErr("data_dir", "must not be empty")
	}
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			r.URLs = append(r.URLs, u)
		}
	}
	if cfg.NATS.Replicas < 1 || cfg.NATS.Replicas > 5 {
		return nil, cfgErr("nats.replicas", "must be 1 to 5, got %d", cfg.NATS.Replicas)
	}
	switch s := cfg.NATS.SyncInterval; s {
	case "", "always":
	default:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, cfgErr("nats.sync_interval", "must be \"always\" or a positive duration")
		}
		r.Sync = d
	}
	if cfg.NATS.RejectsMaxBytes < 1<<20 {
		return nil, cfgErr("nats.rejects_max_bytes", "must be at least 1048576 (1 MiB)")
	}
	if time.Duration(cfg.NATS.RejectsMaxAge) < time.Minute {
		return nil, cfgErr("nats.rejects_max_age", "must be at least 1m; 168h (7 days) is the default")
	}
	if cfg.Retention.EraseAfter < 0 {
		return nil, cfgErr("retention.erase_after", "must not be negative; 0 switches retention off")
	}
	if cfg.Retention.EraseAfter > 0 && cfg.Retention.EraseAfter < Duration(time.Second) {
		return nil, cfgErr("retention.erase_after", "must be 0 (off) or at least 1s; AML's retention is years (43800h)")
	}
	if cfg.Retention.Every <= 0 {
		return nil, cfgErr("retention.every", "must be positive")
	}
	if err := resolveKeys(r, cfg.Keys, getenv); err != nil {
		return nil, err
	}
	if time.Duration(cfg.NATS.DuplicateWindow) < time.Minute {
		return nil, cfgErr("nats.duplicate_window", "must be at least 1m; Allpass retries for hours, 24h is the default")
	}
	if cfg.Ingest.MaxBody <= 0 {
		return nil, cfgErr("ingest.max_body", "must be positive")
	}
	if cfg.Ingest.MaxInFlight <= 0 {
		return nil, cfgErr("ingest.max_in_flight", "must be positive")
	}
	if qw := time.Duration(cfg.Ingest.QueueWait); qw <= 0 || qw > shutdownTimeout/2 {
		// Shutdown waits for queued requests too; a wait past half its bound could
		// leave a queued request unanswered when the log closes.
		return nil, cfgErr("ingest.queue_wait", "must be positive and at most %s", shutdownTimeout/2)
	}
	if at := time.Duration(cfg.Ingest.AppendTimeout); at <= 0 || at+time.Duration(cfg.Ingest.QueueWait) > ingest.MaxHold {
		return nil, cfgErr("ingest.append_timeout", "must be positive, and with ingest.queue_wait at most %s, so a held webhook is answered before the connection's write timeout", ingest.MaxHold)
	}
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return nil, cfgErr("log.level", "must be debug, info, warn or error")
	}
	switch cfg.Log.Format {
	case "json", "console":
	default:
		return nil, cfgErr("log.format", "must be json or console")
	}

	seen := map[string]string{}
	for i, a := range cfg.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		if a.Name != "" {
			key = fmt.Sprintf("apps[%d] (%s)", i, a.Name)
		}
		app, err := resolveApp(key, a, getenv)
		if err != nil {
			return nil, err
		}
		for _, id := range []string{app.Name, string(app.AppKey)} {
			if prev, dup := seen[id]; dup {
				return nil, cfgErr(key, "name or app_key %q already used by %s", id, prev)
			}
			seen[id] = key
		}
		r.Apps = append(r.Apps, app)
		oa, err := resolveOpenAPI(key+".open_api", a.OpenAPI, getenv)
		if err != nil {
			return nil, err
		}
		if oa.BaseURL != "" {
			r.OpenAPIs = append(r.OpenAPIs, reconcile.App{App: app, OpenAPI: oa})
		}
	}
	rc := cfg.Reconcile
	switch {
	case rc.Every < 0:
		return nil, cfgErr("reconcile.every", "must not be negative (0 switches the sweep off)")
	case rc.StaleAfter <= 0:
		return nil, cfgErr("reconcile.stale_after", "must be positive")
	case rc.FullEvery <= 0:
		return nil, cfgErr("reconcile.full_every", "must be positive")
	case !(rc.Rate > 0) || rc.Rate > 1000:
		return nil, cfgErr("reconcile.rate", "must be more than 0 and at most 1000 calls per second")
	}
	if needApps && len(r.Apps) == 0 {
		return nil, cfgErr("apps", "at least one Allpass app is needed to accept webhooks")
	}

	names := map[string]bool{}
	for i, t := range cfg.API.Tokens {
		key := fmt.Sprintf("api.tokens[%d]", i)
		if t.Name == "" {
			return nil, cfgErr(key+".name", "must not be empty")
		}
		if names[t.Name] {
			return nil, cfgErr(key+".name", "%q used twice", t.Name)
		}
		names[t.Name] = true
		if t.Role != "reader" && t.Role != "auditor" && t.Role != "admin" {
			return nil, cfgErr(key+".role", "must be reader, auditor or admin")
		}
		sec, err := t.Token.resolve(key+".token", getenv)
		if err != nil {
			return nil, err
		}
		if len(sec) < 16 {
			return nil, cfgErr(key+".token", "must be at least 16 characters")
		}
		r.Tokens = append(r.Tokens, resolvedToken{Name: t.Name, Role: t.Role, Secret: sec})
	}
	if needTokens && len(r.Tokens) == 0 {
		return nil, cfgErr("api.tokens", "at least one token is needed to serve the read API")
	}
	return r, nil
}

// resolveKeys parses keys.master and keys.previous. Errors name the key, never the value.
func resolveKeys(r *Resolved, kc KeysConfig, getenv func(string) string) error {
	if kc.Master == "" {
		if len(kc.Previous) > 0 {
			return cfgErr("keys.master", "must be set when keys.previous is")
		}
		return nil
	}
	parse := func(key string, s Secret) (eventlog.MasterKey, error) {
		v, err := s.resolve(key, getenv)
		if err != nil {
			return eventlog.MasterKey{}, err
		}
		m, err := eventlog.ParseMasterKey(v)
		if err != nil {
			return eventlog.MasterKey{}, cfgErr(key, "%v", err)
		}
		return m, nil
	}
	cur, err := parse("keys.master", kc.Master)
	if err != nil {
		return err
	}
	keys := &eventlog.MasterKeys{Current: cur}
	for i, p := range kc.Previous {
		m, err := parse(fmt.Sprintf("keys.previous[%d]", i), p)
		if err != nil {
			return err
		}
		keys.Previous = append(keys.Previous, m)
	}
	r.Keys = keys
	return nil
}

// resolveOpenAPI checks an app's open_api and reads its private key; an empty base_url
// leaves reconciliation off for the app (and then nothing else may be set).
func resolveOpenAPI(key string, c OpenAPIConfig, getenv func(string) string) (reconcile.OpenAPI, error) {
	if c.BaseURL == "" {
		if c.PrivateKey != "" {
			return reconcile.OpenAPI{}, cfgErr(key+".base_url", "must be set with private_key")
		}
		return reconcile.OpenAPI{}, nil
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return reconcile.OpenAPI{}, cfgErr(key+".base_url", "must be an http or https URL with a host, without credentials or query")
	}
	if c.PrivateKey == "" {
		return reconcile.OpenAPI{}, cfgErr(key+".private_key", "must be set with base_url")
	}
	pk, err := c.PrivateKey.resolve(key+".private_key", getenv)
	if err != nil {
		return reconcile.OpenAPI{}, err
	}
	if c.Timeout < 0 {
		return reconcile.OpenAPI{}, cfgErr(key+".timeout", "must not be negative")
	}
	t := time.Duration(c.Timeout)
	if t == 0 {
		t = reconcile.DefaultTimeout
	}
	return reconcile.OpenAPI{BaseURL: c.BaseURL, PrivateKey: pk, Timeout: t}, nil
}

func resolveApp(key string, a AppConfig, getenv func(string) string) (*allpass.App, error) {
	if a.Name == "" {
		return nil, cfgErr(key+".name", "must not be empty")
	}
	appKey, err := domain.ParseAppKey(a.AppKey)
	if err != nil {
		return nil, cfgErr(key+".app_key", "must be a UUID")
	}
	app := &allpass.App{Name: a.Name, AppKey: appKey, Method: allpass.Method(a.Method)}
	switch app.Method {
	case allpass.MethodCBC, allpass.MethodGCM:
	case "":
		app.Method = allpass.MethodCBC
	default:
		return nil, cfgErr(key+".method", "must be aes-256-cbc or aes-256-gcm")
	}
	gens := append([]KeyConfig{{SecretKey: a.SecretKey, HMACKey: a.HMACKey}}, a.PreviousKeys...)
	for g, kc := range gens {
		field := ".secret_key"
		hfield := ".hmac_key"
		if g > 0 {
			field = fmt.Sprintf(".previous_keys[%d].secret_key", g-1)
			hfield = fmt.Sprintf(".previous_keys[%d].hmac_key", g-1)
		}
		sec, err := kc.SecretKey.resolve(key+field, getenv)
		if err != nil {
			return nil, err
		}
		if sec == "" {
			return nil, cfgErr(key+field, "must be set")
		}
		k, err := allpass.ParseKey(a.Name, field[1:], sec)
		if err != nil {
			return nil, cfgErr(key+field, "must be 64 hex characters or base64 of 32 bytes")
		}
		keys := allpass.Keys{Secret: k}
		if app.Method == allpass.MethodCBC {
			h, err := kc.HMACKey.resolve(key+hfield, getenv)
			if err != nil {
				return nil, err
			}
			if h == "" {
				return nil, cfgErr(key+hfield, "must be set for aes-256-cbc")
			}
			hk, err := allpass.ParseKey(a.Name, hfield[1:], h)
			if err != nil {
				return nil, cfgErr(key+hfield, "must be 64 hex characters or base64 of 32 bytes")
			}
			keys.HMAC = hk[:]
		}
		app.Keys = append(app.Keys, keys)
	}
	return app, nil
}
