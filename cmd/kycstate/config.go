package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/snapshot"
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

	// Projection is the projection file's snapshots (DESIGN.md section 14).
	Projection ProjectionConfig `yaml:"projection"`
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

	// How this process authenticates to the NATS of nats.url (DESIGN.md section 15).
	// Credentials is the path of a creds file or an nkey seed file; User and Password
	// authenticate by name instead (one of the two ways, or none). With neither, and
	// nats.url set, the credentials file serve made for its listener in data_dir is used
	// when it is there, so the tools reach a running serve with its own config.
	Credentials string `yaml:"credentials"`
	User        string `yaml:"user"`
	Password    Secret `yaml:"password"`
	// TLS verifies the server and presents a client certificate.
	TLS NATSTLSConfig `yaml:"tls"`
}

// NATSTLSConfig are PEM file paths: CA alone verifies the server (instead of the system's
// roots); Cert and Key, both or neither, are the client certificate.
type NATSTLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type IngestConfig struct {
	Listen      string `yaml:"listen"`
	MaxBody     int64  `yaml:"max_body"`
	MaxInFlight int    `yaml:"max_in_flight"`
	// QueueWait is how long a request past max_in_flight waits for a slot before 503.
	QueueWait     Duration `yaml:"queue_wait"`
	AppendTimeout Duration `yaml:"append_timeout"`
	// ReadTimeout bounds the read of a webhook's body, which is read before the request
	// takes an in-flight slot (DESIGN.md section 15), at a minimum rate of 1 KiB/s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// MaxConnsPerSource caps the connections one source address holds open at once; 0
	// switches the cap off (behind a proxy every connection has the proxy's address).
	MaxConnsPerSource int `yaml:"max_conns_per_source"`
	// MaxClockSkew and MaxEventAge are the window an event's own time is trusted in
	// (DESIGN.md section 15): no more than MaxClockSkew after its receive time, and, for
	// a time no signature covers (Allpass's envelope time), no more than MaxEventAge
	// before it. Outside, the event is stored with its receive time, flagged clock_skew.
	MaxClockSkew Duration `yaml:"max_clock_skew"`
	MaxEventAge  Duration `yaml:"max_event_age"`
	// KeepRaw keeps the original body and signature in each stored event so auditors can
	// re-verify authenticity offline. Default true.
	KeepRaw *bool `yaml:"keep_raw"`
}

// times is the trusted time window ingest and rejects reprocess apply.
func (c IngestConfig) times() domain.TimeBounds {
	return domain.TimeBounds{MaxClockSkew: time.Duration(c.MaxClockSkew), MaxEventAge: time.Duration(c.MaxEventAge)}
}

type APIConfig struct {
	Listen  string        `yaml:"listen"`
	Tokens  []TokenConfig `yaml:"tokens"`
	MaxWait Duration      `yaml:"max_wait"`
	// ReadyLag is how many sequences behind the log the projection may be and still be ready.
	ReadyLag uint64 `yaml:"ready_lag"`
	// TrustedProxies are the proxies in front of the API, as CIDRs (10.0.0.0/8) or
	// addresses: from a peer among them, the right-most X-Forwarded-For address that is
	// not one is the request's source, for the console's sign-in slowing and the logs of
	// refused authentications. Empty (the default): the peer is the source, whatever
	// X-Forwarded-For says.
	TrustedProxies []string      `yaml:"trusted_proxies"`
	Console        ConsoleConfig `yaml:"console"`
}

// ConsoleConfig is the auditor console's (DESIGN.md section 12).
type ConsoleConfig struct {
	// SessionKey signs console sessions: 32 bytes as 64 hex characters or base64. Every
	// query node behind one balancer needs the same one, so that a session opened on one
	// is accepted by the next. Unset: a key derived from keys.master, which those nodes
	// share too. Either way the key is bound to api.tokens, so changing a token ends the
	// sessions it opened.
	SessionKey Secret `yaml:"session_key"`
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

// ProjectionConfig is the snapshots of query nodes' projections.
type ProjectionConfig struct {
	// SnapshotEvery is how often query nodes (serve included) snapshot their projection
	// into KYC_SNAPSHOTS, one node at a time; 0 switches scheduled snapshots off.
	SnapshotEvery Duration `yaml:"snapshot_every"`
	// SnapshotsKeep is how many readable snapshots are kept; older ones are removed.
	SnapshotsKeep int `yaml:"snapshots_keep"`
}

// AppConfig is one entry of apps: an app of Allpass (the default provider) or of another
// provider (DESIGN.md section 13), each with its own keys.
type AppConfig struct {
	Name string `yaml:"name"`
	// Provider is allpass (the default when empty), sumsub, persona, veriff or onfido.
	// An Allpass app has app_key, method, secret_key, hmac_key, previous_keys and
	// open_api; another provider's has webhook_secret, previous_webhook_secrets and
	// (Veriff) api_key.
	Provider string `yaml:"provider"`
	// WebhookSecret signs the provider's webhooks (Sumsub's secret key, Persona's
	// webhook secret, Veriff's shared secret key, Onfido's webhook token).
	WebhookSecret Secret `yaml:"webhook_secret"`
	// PreviousWebhookSecrets are still accepted during a rotation, tried after
	// webhook_secret in order.
	PreviousWebhookSecrets []Secret `yaml:"previous_webhook_secrets"`
	// APIKey is Veriff's API key: a webhook's X-AUTH-CLIENT must equal it.
	APIKey Secret `yaml:"api_key"`

	AppKey    string `yaml:"app_key"`
	Method    string `yaml:"method"`
	SecretKey Secret `yaml:"secret_key"`
	HMACKey   Secret `yaml:"hmac_key"`
	// PreviousKeys are older generations still accepted (key rotation), newest first.
	PreviousKeys []KeyConfig `yaml:"previous_keys"`
	// OpenAPI enables reconciliation of this app's applicants.
	OpenAPI OpenAPIConfig `yaml:"open_api"`
	// API enables reconciliation of a Sumsub, Persona or Veriff app's applicants through
	// the provider's status API (DESIGN.md sections 10 and 13).
	API ProviderAPIConfig `yaml:"api"`
}

// ProviderAPIConfig is apps[].api: a provider's status API. Sumsub authenticates with an
// App-Token pair (app_token, secret_key), Persona with an API key (api_key, a Bearer
// token); Veriff with the app's own api_key and webhook_secret (its shared secret key
// signs requests and answers), so its api has base_url and timeout only.
type ProviderAPIConfig struct {
	BaseURL   string   `yaml:"base_url"`   // the provider's API host, configured, never built in; empty: no reconciliation
	AppToken  Secret   `yaml:"app_token"`  // Sumsub: X-App-Token
	SecretKey Secret   `yaml:"secret_key"` // Sumsub: the App-Token's secret key (X-App-Access-Sig)
	APIKey    Secret   `yaml:"api_key"`    // Persona: the API key
	Timeout   Duration `yaml:"timeout"`    // one call, body included; default 10s
}

type KeyConfig struct {
	SecretKey Secret `yaml:"secret_key"`
	HMACKey   Secret `yaml:"hmac_key"`
}

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
			QueueWait: Duration(ingest.DefaultQueueWait), AppendTimeout: Duration(ingest.DefaultAppendTimeout),
			ReadTimeout: Duration(ingest.DefaultReadTimeout), MaxConnsPerSource: ingest.DefaultMaxConnsPerSource,
			MaxClockSkew: Duration(ingest.DefaultMaxClockSkew), MaxEventAge: Duration(ingest.DefaultMaxEventAge)},
		API: APIConfig{Listen: "127.0.0.1:8081", MaxWait: Duration(api.DefaultMaxWait), ReadyLag: 1000},
		Projector: ProjectorConfig{Batch: projector.DefaultMaxBatch,
			BatchWait: Duration(projector.DefaultMaxWait)},
		Projection: ProjectionConfig{SnapshotEvery: Duration(snapshot.DefaultEvery), SnapshotsKeep: snapshot.DefaultKeep},
		Retention:  RetentionConfig{Every: Duration(erase.DefaultSweepEvery)},
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
