package main

import (
	"io"
	"testing"
)

// TestDevModeTakesEnvOverrides: a variable that overrides a field of an app (the Open
// API's address, say) keeps development mode and applies over the generated app; only an
// app defined with its own appKey leaves development mode.
func TestDevModeTakesEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	getenv, environ := envFunc("KYCSTATE_DATA_DIR", dir,
		"KYCSTATE_APPS_0_OPEN_API_BASE_URL", "http://127.0.0.1:28082", "KYCSTATE_APPS_0_METHOD", "aes-256-gcm")
	e := &env{getenv: getenv, environ: environ, stdout: io.Discard, stderr: io.Discard}
	cfg, err := loadServiceConfig(e, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 1 || cfg.Apps[0].Name != "dev" || cfg.Apps[0].AppKey == "" ||
		cfg.Apps[0].OpenAPI.BaseURL != "http://127.0.0.1:28082" || cfg.Apps[0].Method != "aes-256-gcm" {
		t.Fatalf("not the development app with the overrides: %+v", cfg.Apps)
	}

	getenv, environ = envFunc("KYCSTATE_DATA_DIR", t.TempDir(),
		"KYCSTATE_APPS_0_NAME", "mine", "KYCSTATE_APPS_0_APP_KEY", "71f2c0c6-c720-423b-8df0-7763102ad57e")
	e = &env{getenv: getenv, environ: environ, stdout: io.Discard, stderr: io.Discard}
	cfg, err = loadServiceConfig(e, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps) != 1 || cfg.Apps[0].Name != "mine" || len(cfg.API.Tokens) != 0 {
		t.Fatalf("an app defined by the environment went to development mode: %+v", cfg)
	}
}
