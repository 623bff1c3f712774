// Package e2e holds end-to-end tests of the built kycstate binary: the README's commands,
// development mode, config errors, signals, kill -9 under load, erasure, reconciliation,
// and a real 3-node NATS cluster on loopback. It has no code of its own.
//
// The tests drive the binary as an operator would, through its flags, config, signals
// and HTTP listeners, and import of this module only the vocabulary a product service
// also has (domain, api/client, ingest/allpass): nothing reaches into a store. TestMain
// builds the binaries once; with -short the tests that need them skip, and what needs
// none (README's layout against `go list ./...`) still runs.
package e2e
