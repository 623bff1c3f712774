package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

var errUsage = errors.New("usage error")

// env is everything run takes from the process, so tests can run the binary's code in process.
type env struct {
	getenv  func(string) string
	environ []string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

type command struct {
	name    string
	summary string
	// where says whether the command needs the service stopped or works on a running one.
	run func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run everything in one process: embedded NATS, ingest, projector, read API", cmdServe},
		{"ingest", "run only the webhook endpoint, against an external NATS (nats.url)", cmdIngest},
		{"query", "run a query node: projector and read API, against an external NATS (nats.url)", cmdQuery},
		{"replay", "print the log straight from the stream with each event's outcome", cmdReplay},
		{"verify", "fold the log afresh and compare every digest with the projection", cmdVerify},
		{"rebuild", "fold the whole log into a new projection file and swap it in", cmdRebuild},
		{"export", "write the log as JSON lines, one per event", cmdExport},
		{"rejects", "list or reprocess refused webhooks (rejects list|reprocess)", cmdRejects},
		{"reconcile", "check applicants against Allpass's Open API and append what differs", cmdReconcile},
		{"erase", "erase an applicant's personal data (--applicant ID --reason TEXT)", cmdErase},
		{"keys", "rewrap every data key under keys.master after a rotation (keys rewrap)", cmdKeys},
		{"backup", "write KYC_EVENTS and KYC_KEYS to a directory (--out DIR)", cmdBackup},
		{"restore", "restore a backup into a server that has neither stream (--from DIR [--erasures FILE])", cmdRestore},
		{"erasures", "write the erasure ledger, nothing personal in it (--out FILE)", cmdErasures},
		{"standby", "create a standby's mirrors (--primary-domain D) or promote it (--promote)", cmdStandby},
		{"snapshot", "snapshot the projection into KYC_SNAPSHOTS now (--list: list them)", cmdSnapshot},
		{"sim", "an Allpass simulator and load generator", cmdSim},
		{"keygen", "print fresh app keys and API tokens", cmdKeygen},
		{"version", "print the version", cmdVersion},
	}
}

// run is main without the process: it parses args and runs one subcommand until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, environ []string,
	stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, environ: environ, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			usage(stderr)
			return &exitErr{code: 2}
		}
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	usage(stderr)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `kycstate keeps KYC verification state from Allpass webhooks.

Usage: kycstate <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --config FILE (YAML); every key can be overridden by KYCSTATE_* variables.
With no config, serve runs in development mode with keys generated under ./data.
Run "kycstate <command> --help" for a command's flags.
`)
}

// newFlags returns a flag set whose --help prints the command's description.
func newFlags(e *env, name, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package's own line about a bad flag goes nowhere: parse returns the same
	// error, which is printed once, after the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: kycstate %s [flags]\n\n%s\n\nFlags:\n", name, strings.TrimSpace(description))
		fs.SetOutput(e.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// isHelp reports whether arg asks for help, as the flag package reads -h and --help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help"
}

// parse parses flags; --help is not an error.
func parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return &exitErr{code: 0}
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
