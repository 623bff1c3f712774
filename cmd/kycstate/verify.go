package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/store/projection"
)

func cmdVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "verify", `Folds the log afresh and compares every applicant's digest, event count and last
sequence with a projection, listing each difference. Exit status 1 when any differ.

A running service (serve or query node): --api URL asks its read API (GET /v1/verify) to
compare the projection it serves with the log, as of the projection's checkpoint, so the
projector's lag is not a difference. It needs an auditor token: --token, or else the first
auditor token of --config (in development mode, of <data_dir>/dev.yaml). The service bounds
one verify to 5 minutes; verify a longer log offline.

A stopped service (no --api): opens <data_dir>/projection.db itself. A running node holds
that file locked, so this refuses while one runs there; use --api then.
`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	apiURL := fs.String("api", "", "verify a running service through its read API at this URL, e.g. http://127.0.0.1:8081 (default: offline)")
	token := fs.String("token", "", "with --api: an auditor token, literally, as env:NAME or as file:PATH (default: the config's first auditor token)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *apiURL != "" {
		tok, err := verifyToken(e, *cfgPath, *token)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := verifyViaAPI(ctx, *apiURL, tok)
		if err != nil {
			return err
		}
		return reportVerify(e, res, time.Since(start), "stop the node and run kycstate rebuild")
	}
	if *token != "" {
		return fmt.Errorf("%w: --token goes with --api; offline verify reads the data dir", errUsage)
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{OwnsProjection: true})
	if err != nil {
		return suggestAPI(e, *cfgPath, err)
	}
	defer o.Close()
	path := filepath.Join(o.r.DataDir, "projection.db")
	proj, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer proj.Close()
	start := time.Now()
	res, err := projection.Verify(ctx, o.events, proj)
	if err != nil {
		return err
	}
	return reportVerify(e, res, time.Since(start), "run kycstate rebuild")
}
