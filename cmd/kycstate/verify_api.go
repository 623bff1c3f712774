package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// verify --api: the running service's read API verifies the projection it serves
// (GET /v1/verify), because a running node holds <data_dir>/projection.db locked.

// verifyViaAPI asks the read API at base to verify its projection against the log.
// Errors say what to do: a refused or non-auditor token, an address nothing answers on,
// a node that does not verify. They branch on the answer's code, never its message.
func verifyViaAPI(ctx context.Context, base, token string) (domain.VerifyResult, error) {
	c, err := client.New(base, token, client.WithUserAgent("kycstate-verify"))
	if err != nil {
		return domain.VerifyResult{}, fmt.Errorf("%w: --api %s: %v", errUsage, base, err)
	}
	// The service bounds a verify to api.DefaultVerifyTimeout; the margin covers
	// sending the answer. This bound only catches a server that never answers.
	ctx, cancel := context.WithTimeout(ctx, api.DefaultVerifyTimeout+time.Minute)
	defer cancel()
	res, _, err := c.Verify(ctx)
	if err == nil {
		return res.Result(), nil
	}
	var e *client.Error
	var bad *client.BadAnswerError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &bad):
		return domain.VerifyResult{}, err
	case ctx.Err() != nil:
		return domain.VerifyResult{}, fmt.Errorf("verify through %s: no answer: %w", base, ctx.Err())
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return domain.VerifyResult{}, fmt.Errorf("cannot reach the read API at %s: %v; is the service running, with api.listen at that address?", base, err)
	}
	switch {
	case e.Code == client.CodeUnauthorized || e.Status == http.StatusUnauthorized:
		return domain.VerifyResult{}, fmt.Errorf("the read API at %s refused the token (401: %s): pass an auditor token of its api.tokens with --token", base, e.Message)
	case e.Code == client.CodeForbidden || e.Status == http.StatusForbidden:
		return domain.VerifyResult{}, fmt.Errorf("verify needs an auditor token; the read API at %s says this one may not (403: %s): pass an auditor token with --token", base, e.Message)
	case e.Code == client.CodeVerifyDisabled:
		return domain.VerifyResult{}, fmt.Errorf("the read API at %s does not verify (404: %s); verify offline on the stopped node's data dir", base, e.Message)
	case e.Status == http.StatusNotFound:
		return domain.VerifyResult{}, fmt.Errorf("%s has no /v1/verify (404: %s); is that the read API's address (api.listen), of a kycstate that has verify?", base, e.Message)
	}
	return domain.VerifyResult{}, fmt.Errorf("the read API at %s answered %d %s: %s", base, e.Status, http.StatusText(e.Status), e.Message)
}

// verifyToken is --token (literal, env:NAME or file:PATH), or else the first auditor
// token of the config, as the ops commands load it (the development config under
// data_dir when there is no --config and no app).
func verifyToken(e *env, cfgPath, flagValue string) (string, error) {
	if flagValue != "" {
		return Secret(flagValue).resolve("--token", e.getenv)
	}
	r, err := opsConfig(e, cfgPath, false)
	if err != nil {
		return "", fmt.Errorf("%w (or give the auditor token with --token)", err)
	}
	for _, t := range r.Tokens {
		if t.Role == domain.RoleAuditor {
			return t.Secret, nil
		}
	}
	return "", fmt.Errorf("%w: no auditor token in the config's api.tokens; give one with --token", errUsage)
}

// opsConfig loads and resolves an audit or operations command's config: --config, or
// without one the development config serve wrote under data_dir, if there is one.
func opsConfig(e *env, cfgPath string, needApps bool) (*Resolved, error) {
	cfg, err := loadConfig(cfgPath, e.getenv, e.environ)
	if err != nil {
		return nil, err
	}
	if cfgPath == "" && !definesApp(cfg) {
		dev := filepath.Join(cfg.DataDir, devConfigName)
		if _, err := os.Stat(dev); err == nil {
			if cfg, err = loadConfig(dev, e.getenv, e.environ); err != nil {
				return nil, err
			}
		}
	}
	return resolveConfig(cfg, e.getenv, needApps, false)
}

// suggestAPI adds to err, when a running process holds the data dir, how to verify the
// running service instead.
func suggestAPI(e *env, cfgPath string, err error) error {
	r, cerr := opsConfig(e, cfgPath, false)
	if cerr != nil || !dataDirLocked(r.DataDir) {
		return err
	}
	return fmt.Errorf("%w; if that is a running serve or query node, verify through its read API: kycstate verify --api http://%s (with an auditor token: --token, or the config's)",
		err, dialAddr(r.API.Listen))
}

// dataDirLocked reports whether another process holds data_dir's lock (lockDataDir).
func dataDirLocked(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "kycstate.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// reportVerify prints each difference and the summary line, and turns differences into
// exit status 1 with hint saying what to do.
func reportVerify(e *env, res domain.VerifyResult, took time.Duration, hint string) error {
	for _, d := range res.Differences {
		fmt.Fprintln(e.stdout, d.String())
	}
	fmt.Fprintf(e.stdout, "verified %d applicants over %d events in %s: %d differences\n",
		res.Applicants, res.Events, took.Round(time.Millisecond), len(res.Differences))
	fmt.Fprintf(e.stdout, "events: %d signed, %d unsigned (stored before event MACs), %d unauthenticated\n",
		res.Signed, res.Unsigned, res.Unauthenticated)
	if n := res.Unchecked(); n > 0 {
		fmt.Fprintf(e.stdout, "%d events not checked: this verify ran without keys.master, which holds the log key\n", n)
	}
	if res.Unauthenticated > 0 {
		return &exitErr{code: 1, err: fmt.Errorf("the log holds %d events that kycstate did not write (their MAC fails): someone with access to NATS wrote them; they have no effect on the projection, find out who", res.Unauthenticated)}
	}
	if len(res.Differences) > 0 {
		return &exitErr{code: 1, err: fmt.Errorf("projection differs from the log in %d places; %s", len(res.Differences), hint)}
	}
	return nil
}
