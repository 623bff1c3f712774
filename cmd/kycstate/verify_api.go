package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
)

// verify --api: the running service's read API verifies the projection it serves
// (GET /v1/verify), because a running node holds <data_dir>/projection.db locked.

// verifyViaAPI asks the read API at base to verify its projection against the log.
// Errors say what to do: a refused or non-auditor token, an address nothing answers on,
// a node that does not verify.
func verifyViaAPI(ctx context.Context, base, token string) (domain.VerifyResult, error) {
	u, err := verifyURL(base)
	if err != nil {
		return domain.VerifyResult{}, fmt.Errorf("%w: --api %s: %v", errUsage, base, err)
	}
	// The service bounds a verify to api.DefaultVerifyTimeout; the margin covers
	// sending the answer. This bound only catches a server that never answers.
	ctx, cancel := context.WithTimeout(ctx, api.DefaultVerifyTimeout+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return domain.VerifyResult{}, fmt.Errorf("%w: --api %s: %v", errUsage, base, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	// No redirects: the token is for this address only.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return domain.VerifyResult{}, fmt.Errorf("verify through %s: no answer: %w", base, ctx.Err())
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return domain.VerifyResult{}, fmt.Errorf("cannot reach the read API at %s: %v; is the service running, with api.listen at that address?", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return decodeVerify(resp.Body, base)
	}
	msg := errorMessage(resp)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return domain.VerifyResult{}, fmt.Errorf("the read API at %s refused the token (401: %s): pass an auditor token of its api.tokens with --token", base, msg)
	case http.StatusForbidden:
		return domain.VerifyResult{}, fmt.Errorf("verify needs an auditor token; the read API at %s says this one may not (403: %s): pass an auditor token with --token", base, msg)
	case http.StatusNotFound:
		if strings.Contains(msg, "does not verify") {
			return domain.VerifyResult{}, fmt.Errorf("the read API at %s does not verify (404: %s); verify offline on the stopped node's data dir", base, msg)
		}
		return domain.VerifyResult{}, fmt.Errorf("%s has no /v1/verify (404: %s); is that the read API's address (api.listen), of a kycstate that has verify?", base, msg)
	}
	return domain.VerifyResult{}, fmt.Errorf("the read API at %s answered %s: %s", base, resp.Status, msg)
}

// verifyURL returns base's /v1/verify. base may omit the scheme (127.0.0.1:8081) and may
// carry a path prefix (a proxy's).
func verifyURL(base string) (string, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", errors.New("not a URL such as http://127.0.0.1:8081")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("must be an http or https URL, such as http://127.0.0.1:8081")
	case u.Host == "":
		return "", errors.New("has no host; give one such as http://127.0.0.1:8081")
	case u.RawQuery != "" || u.Fragment != "":
		return "", errors.New("must not carry a query or fragment")
	case u.User != nil:
		return "", errors.New("must not carry credentials; give the token with --token")
	}
	return u.JoinPath("v1", "verify").String(), nil
}

// decodeVerify reads GET /v1/verify's answer. Unknown fields are ignored, so a newer
// service's answer still reads.
func decodeVerify(r io.Reader, base string) (domain.VerifyResult, error) {
	var v struct {
		Checkpoint  *uint64 `json:"checkpoint"`
		LogLast     uint64  `json:"logLast"`
		Applicants  int     `json:"applicants"`
		Events      uint64  `json:"events"`
		Differences *[]struct {
			Kind        domain.DifferenceKind `json:"kind"`
			ApplicantID *string               `json:"applicantId"`
			Log         string                `json:"log"`
			Projection  string                `json:"projection"`
		} `json:"differences"`
	}
	if err := json.NewDecoder(r).Decode(&v); err != nil || v.Checkpoint == nil || v.Differences == nil {
		return domain.VerifyResult{}, fmt.Errorf("the read API at %s answered /v1/verify with something that is not a verify result; is that kycstate's read API?", base)
	}
	res := domain.VerifyResult{Checkpoint: *v.Checkpoint, LogLast: v.LogLast, Applicants: v.Applicants, Events: v.Events}
	for _, d := range *v.Differences {
		vd := domain.VerifyDifference{Kind: d.Kind, Log: d.Log, Projection: d.Projection}
		if d.ApplicantID != nil {
			vd.ApplicantID = domain.ApplicantID(*d.ApplicantID)
		}
		res.Differences = append(res.Differences, vd)
	}
	return res, nil
}

// errorMessage returns the message of the API's {"error":{"code","message"}} body, or the
// status text when the body is not one.
func errorMessage(resp *http.Response) string {
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		return http.StatusText(resp.StatusCode)
	}
	return e.Error.Message
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
		if t.Role == "auditor" {
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
	if cfgPath == "" && len(cfg.Apps) == 0 {
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
	if len(res.Differences) > 0 {
		return &exitErr{code: 1, err: fmt.Errorf("projection differs from the log in %d places; %s", len(res.Differences), hint)}
	}
	return nil
}
