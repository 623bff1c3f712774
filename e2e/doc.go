// Package e2e holds end-to-end tests of the built kycstate binary: the README's commands,
// development mode, config errors, signals, kill -9 under load, and a real 3-node NATS
// cluster on loopback. It has no code of its own.
package e2e
