package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
)

func cmdErase(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "erase", `Erases an applicant's personal data (DESIGN.md section 11): appends applicantErased (origin
operator, who and why), then destroys the applicant's data key. Its status, history and
digests remain; its externalUserId, payloads and raw bodies can no longer be read by anyone.
Repeating it is harmless.

With --api it asks a running serve or query node (POST /v1/applicants/{id}/erase) with an
admin token (--token, or the config's first admin token). Without it, it works through the
log directly: through nats.url on a running cluster, or offline on a stopped serve's
data_dir; it needs keys.master (or the serve's development key under data_dir).`)
	cfgPath := fs.String("config", "", "YAML config file")
	applicant := fs.String("applicant", "", "the applicant id to erase (required; its provider's id)")
	providerName := fs.String("provider", string(domain.ProviderAllpass), "the provider of --applicant")
	reason := fs.String("reason", "", "why (required; kept in the log)")
	apiURL := fs.String("api", "", "base URL of a running node's read API, e.g. http://127.0.0.1:8081")
	token := fs.String("token", "", "admin token for --api (default: the config's first admin token)")
	if err := parse(fs, args); err != nil {
		return err
	}
	provider := domain.Provider(*providerName)
	if !provider.Valid() {
		return fmt.Errorf("%w: --provider must be one of allpass, sumsub, persona, veriff, onfido", errUsage)
	}
	var id domain.ApplicantID
	if provider == domain.ProviderAllpass {
		var err error
		if id, err = domain.ParseApplicantID(*applicant); err != nil {
			return fmt.Errorf("%w: --applicant must be an applicant id (a UUID; another provider's id with --provider)", errUsage)
		}
	} else if !domain.IsSubjectToken(*applicant) {
		return fmt.Errorf("%w: --applicant must be a %s applicant id (1 to 64 of A-Z, a-z, 0-9, '_' and '-')", errUsage, provider)
	} else {
		id = domain.ApplicantID(*applicant)
	}
	if strings.TrimSpace(*reason) == "" {
		return fmt.Errorf("%w: --reason is required: an erasure keeps why it was made", errUsage)
	}
	if *apiURL != "" && provider != domain.ProviderAllpass {
		return fmt.Errorf("%w: --api erases Allpass applicants; erase a %s applicant through the log (without --api) or POST /v1/applicants/%s/erase?provider=%s", errUsage, provider, id, provider)
	}
	if *apiURL != "" {
		return eraseViaAPI(ctx, e, *cfgPath, *apiURL, *token, id, *reason)
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedKeys: true})
	if err != nil {
		return suggestEraseAPI(e, *cfgPath, err)
	}
	defer o.Close()
	app, found, err := o.events.ProviderAppKeyOf(ctx, provider, id)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no %s applicant %s in the log", provider, id)
	}
	er, err := erase.New(erase.Config{Events: o.events, Keys: keyringOf(o.events), Rejects: o.events, Logger: o.log})
	if err != nil {
		return err
	}
	by := "kycstate erase"
	if u := e.getenv("USER"); u != "" {
		by += " (" + u + ")"
	}
	seq, pending, err := er.EraseProvider(ctx, provider, app, id, by, strings.TrimSpace(*reason))
	if err != nil {
		return err
	}
	if pending {
		fmt.Fprintf(e.stdout, "erased %s: applicantErased at seq %d; the data key's destruction is pending and is retried by every query node\n", id, seq)
		return nil
	}
	fmt.Fprintf(e.stdout, "erased %s: applicantErased at seq %d, data key destroyed\n", id, seq)
	return nil
}

func eraseViaAPI(ctx context.Context, e *env, cfgPath, base, token string, id domain.ApplicantID, reason string) error {
	if token == "" {
		if r, err := opsConfig(e, cfgPath, false); err == nil {
			for _, t := range r.Tokens {
				if t.Role == domain.RoleAdmin {
					token = t.Secret
					break
				}
			}
		}
	}
	if token == "" {
		return fmt.Errorf("%w: --api needs an admin token: --token, or an admin token in the config's api.tokens", errUsage)
	}
	c, err := client.New(base, token, client.WithUserAgent("kycstate-erase"))
	if err != nil {
		return fmt.Errorf("%w: --api %s: %v", errUsage, base, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, _, err := c.Erase(ctx, id, reason)
	var ce *client.Error
	var ue *url.Error
	switch {
	case err == nil:
	case errors.As(err, &ce) && ce.Code == client.CodeForbidden:
		return fmt.Errorf("erasing needs an admin token; the read API at %s says this one may not (403: %s)", base, ce.Message)
	case errors.As(err, &ce) && ce.Code == client.CodeUnauthorized:
		return fmt.Errorf("the read API at %s refused the token (401: %s): pass an admin token with --token", base, ce.Message)
	case errors.As(err, &ce) && ce.Code == client.CodeNotFound:
		return fmt.Errorf("the read API at %s knows no applicant %s (404: %s)", base, id, ce.Message)
	case errors.As(err, &ue):
		return fmt.Errorf("cannot reach the read API at %s: %v; is the service running, with api.listen at that address?", base, ue.Err)
	default:
		return err
	}
	state := "data key destroyed"
	if res.Pending {
		state = "the data key's destruction is pending and is retried"
	}
	fmt.Fprintf(e.stdout, "erased %s: applicantErased at seq %d, %s\n", res.ApplicantID, res.Seq, state)
	return nil
}

// suggestEraseAPI adds to err, when a running process holds the data dir, how to erase
// through it instead.
func suggestEraseAPI(e *env, cfgPath string, err error) error {
	r, cerr := opsConfig(e, cfgPath, false)
	if cerr != nil || !dataDirLocked(r.DataDir) {
		return err
	}
	return fmt.Errorf("%w; if that is a running serve or query node, erase through its read API: kycstate erase --api http://%s --token ADMIN_TOKEN ...",
		err, dialAddr(r.API.Listen))
}
