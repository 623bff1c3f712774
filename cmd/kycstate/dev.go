package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/reconcile"
	"go.yaml.in/yaml/v3"
)

// devConfigName is the development-mode config written under data_dir.
const devConfigName = "dev.yaml"

// loadServiceConfig loads --config, or, when there is none and the environment defines no
// app (no KYCSTATE_APPS_<n>_APP_KEY or _PROVIDER of another provider), the development config under data_dir (generated on
// first start), with the KYCSTATE_* variables over it: KYCSTATE_APPS_0_OPEN_API_BASE_URL
// points the development app at another Open API rather than leaving a nameless app.
func loadServiceConfig(e *env, path string, allowDev bool) (Config, error) {
	cfg, err := loadConfig(path, e.getenv, e.environ)
	if err != nil || path != "" || !allowDev || definesApp(cfg) {
		return cfg, err
	}
	devPath := filepath.Join(cfg.DataDir, devConfigName)
	created, err := ensureDevConfig(cfg.DataDir, devPath)
	if err != nil {
		return cfg, err
	}
	cfg, err = loadConfig(devPath, e.getenv, e.environ)
	if err != nil {
		return cfg, err
	}
	if created {
		printDevBanner(e, devPath, cfg)
	} else {
		fmt.Fprintf(e.stderr, "kycstate: development mode, keys and tokens in %s\n", devPath)
	}
	return cfg, nil
}

// definesApp reports whether cfg names an app of its own (an Allpass app_key, or an app
// of another provider), rather than overriding fields of the development app.
func definesApp(cfg Config) bool {
	for _, a := range cfg.Apps {
		if a.AppKey != "" || (a.Provider != "" && a.Provider != string(domain.ProviderAllpass)) {
			return true
		}
	}
	return false
}

// ensureDevConfig writes a development config with fresh keys if none exists yet.
func ensureDevConfig(dataDir, path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return false, fmt.Errorf("data_dir: %w", err)
	}
	cfg := defaultConfig()
	cfg.DataDir = dataDir
	cfg.Log.Format = "console"
	// Written out, so that the file shows the defaults the service runs with.
	keepRaw := true
	cfg.Ingest.KeepRaw = &keepRaw
	cfg.Apps = []AppConfig{{
		Name: "dev", AppKey: domain.NewUUID(), Method: string(allpass.MethodCBC),
		SecretKey: Secret(randHex(32)), HMACKey: Secret(randHex(32)),
		// "kycstate sim --open-api 127.0.0.1:8082" serves this app's Open API.
		OpenAPI: OpenAPIConfig{BaseURL: "http://127.0.0.1:8082", PrivateKey: Secret(randHex(24)),
			Timeout: Duration(reconcile.DefaultTimeout)},
	}}
	// The console's sessions are signed with their own key, as on nodes behind a
	// balancer, rather than one derived from the development master key.
	cfg.API.Console.SessionKey = Secret(randHex(32))
	cfg.API.Tokens = []TokenConfig{
		{Name: "dev-reader", Role: string(domain.RoleReader), Token: Secret(randHex(24))},
		{Name: "dev-auditor", Role: string(domain.RoleAuditor), Token: Secret(randHex(24))},
		{Name: "dev-admin", Role: string(domain.RoleAdmin), Token: Secret(randHex(24))},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return false, err
	}
	head := "# kycstate development config, generated on first start. Not for production:\n" +
		"# the secrets are in this file. Delete it to generate new ones.\n"
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte(head), b...), 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func printDevBanner(e *env, path string, cfg Config) {
	a := cfg.Apps[0]
	var b strings.Builder
	fmt.Fprintf(&b, "\nkycstate development mode: generated %s (shown once; kept in that file)\n", path)
	fmt.Fprintf(&b, "  Allpass app   name=%s app_key=%s method=%s\n", a.Name, a.AppKey, a.Method)
	fmt.Fprintf(&b, "  secret_key    %s\n  hmac_key      %s\n", string(a.SecretKey), string(a.HMACKey))
	for _, t := range cfg.API.Tokens {
		fmt.Fprintf(&b, "  token %-7s %s\n", t.Role, string(t.Token))
	}
	fmt.Fprintf(&b, "  webhooks      POST http://%s/webhooks/allpass/%s\n", dialAddr(cfg.Ingest.Listen), a.Name)
	fmt.Fprintf(&b, "  read API      http://%s/v1/applicants/{id}\n\n", dialAddr(cfg.API.Listen))
	fmt.Fprint(e.stdout, b.String())
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// dialAddr turns a listen address (":8080") into one a client can dial ("localhost:8080").
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
