package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/kycstate/kycstate/store/eventlog"
)

func cmdStandby(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "standby", `Sets up or promotes a standby (docs/OPERATIONS.md): a second nats-server whose KYC_EVENTS
and KYC_KEYS are JetStream mirrors of the primary's, with a query node of its own.

  kycstate standby --config standby.yaml --primary-domain DOMAIN
      creates the two mirrors on the server at nats.url, following the primary's streams in
      JetStream domain DOMAIN (the standby server reaches the primary over a leafnode).
      Mirrors already there are left alone.
  kycstate standby --config standby.yaml --promote
      turns the mirrors into the streams of record (their own subjects, the duplicate
      window, atomic batches), keeping every message and sequence. Do it once the primary
      is gone for good; then restart the standby's query node (it stops reading as a
      standby) and point the ingest nodes' nats.url at the standby.

A query node pointed at a standby (nats.url of the standby server) serves reads only: it
takes no erasure, no retention sweep and no reconciliation (those write the log, which only
the primary's nodes do), and it destroys in its own mirror the keys the primary erased,
since a mirror does not copy deletions. Online only: both work through nats.url, on the
running standby server.`)
	cfgPath := fs.String("config", "", "YAML config file; nats.url is the standby server")
	primary := fs.String("primary-domain", "", "the primary's JetStream domain: create the mirrors")
	promote := fs.Bool("promote", false, "promote the standby: its mirrors become the streams of record")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*primary == "") == !*promote {
		return fmt.Errorf("%w: give either --primary-domain DOMAIN or --promote", errUsage)
	}
	r, err := opsConfig(e, *cfgPath, false)
	if err != nil {
		return err
	}
	if len(r.URLs) == 0 {
		return cfgErr("nats.url", "must name the standby server: a standby is a nats-server of its own, not a serve's embedded one")
	}
	oc, err := openOpsConn(ctx, e, *cfgPath, opsOptions{})
	if err != nil {
		return err
	}
	defer oc.Close()
	if *promote {
		done, err := eventlog.Promote(ctx, oc.conn, logConfig(oc.r))
		if err != nil {
			return err
		}
		if len(done) == 0 {
			fmt.Fprintln(e.stdout, "nothing to promote: KYC_EVENTS and KYC_KEYS are streams of record already")
			return nil
		}
		fmt.Fprintf(e.stdout, "promoted %s: restart this server's query node and point the ingest nodes' nats.url here\n", strings.Join(done, " and "))
		return nil
	}
	if err := eventlog.CreateMirrors(ctx, oc.conn, logConfig(oc.r), *primary, oc.log); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "KYC_EVENTS and KYC_KEYS mirror the primary in JetStream domain %s; start a query node with nats.url here\n", *primary)
	return nil
}
