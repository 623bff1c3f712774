package main

import (
	"context"

	"go.uber.org/zap"
)

const serveHelp = `Runs the whole service in one process: an embedded nats-server (JetStream, fsync on every
write, no TCP port unless nats.listen is set; or the external NATS at nats.url), the webhook
endpoint (ingest.listen, default :8080), the projector, and the read API (api.listen, default
127.0.0.1:8081). Data lives under data_dir (default ./data). With nats.listen, every NATS
client must present the nkey whose seed serve keeps in <data_dir>/nats-client.nk (made on
first start); the tools, given serve's config and KYCSTATE_NATS_URL, present it themselves.

With no --config and no app defined by KYCSTATE_APPS_<n>_APP_KEY it starts in development
mode: it generates an Allpass app's keys and three API tokens (reader, auditor, admin), writes them to
<data_dir>/dev.yaml, and prints them once. "kycstate sim" picks them up from there. Other
KYCSTATE_* variables apply over that file (KYCSTATE_APPS_0_OPEN_API_BASE_URL, say).

Started without <data_dir>/projection.db it restores the newest snapshot it can read from
KYC_SNAPSHOTS and catches up from there (--from-scratch: it folds the log from sequence 1).

SIGINT or SIGTERM stops accepting webhooks, finishes the appends in flight, then closes the log.`

const ingestHelp = `Runs only the webhook endpoint against an external NATS (nats.url, several URLs for a
cluster, comma-separated). Stateless: run as many as you like behind a load balancer.`

const queryHelp = `Runs a query node against an external NATS (nats.url): the projector folds the whole log into
<data_dir>/projection.db and the read API serves it. Each query node keeps its own file. A new
one (no projection file) restores the newest snapshot it can read from KYC_SNAPSHOTS and
catches up from its checkpoint + 1; with --from-scratch, or when no snapshot can be read, it
folds the log from sequence 1. Every projection.snapshot_every (default 6h) one query node
snapshots its projection there.`

func cmdServe(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, Mode{Name: "serve", Ingest: true, Query: true, Embedded: true}, serveHelp)
}

func cmdIngest(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, Mode{Name: "ingest", Ingest: true}, ingestHelp)
}

func cmdQuery(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, Mode{Name: "query", Query: true}, queryHelp)
}

// runService runs the ingest half, the query half, or both, until ctx ends.
func runService(ctx context.Context, e *env, args []string, mode Mode, help string) error {
	fs := newFlags(e, mode.Name, help)
	cfgPath := fs.String("config", "", "YAML config file")
	if mode.Query {
		fs.BoolVar(&mode.FromScratch, "from-scratch", false,
			"with no projection file, fold the log from sequence 1 instead of restoring the newest snapshot")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadServiceConfig(e, *cfgPath, mode.Embedded)
	if err != nil {
		return err
	}
	r, err := resolveConfig(cfg, e.getenv, mode.Ingest, mode.Query)
	if err != nil {
		return err
	}
	if r.Keys == nil {
		if !mode.Embedded {
			return errNoMasterKey(mode.Name + " nodes")
		}
		if err := useDevMasterKey(e, r); err != nil {
			return err
		}
	}
	log, err := newLogger(r.Log, e.stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	m := NewMain(mode, r, log.With(zap.String("mode", mode.Name)))
	installTestHooks(e, m)
	defer m.Close()
	return m.Run(ctx)
}
