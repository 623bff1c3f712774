// Command kycstate keeps KYC verification state from Allpass webhooks: one binary for the
// service (serve, ingest, query) and for audits and operations (replay, verify, rebuild,
// export, rejects, reconcile, erase, keys, sim, keygen).
//
// The package wires the library packages into commands and a service, and keeps these
// promises:
//
//   - It alone reads the process: main hands run the arguments, getenv, the environment
//     and the standard streams, and maps the error run returns to the exit code (2 for a
//     usage error, or the code a command chose). Tests call run, and Main, as the binary
//     does.
//   - The configuration is DESIGN.md section 8. Every key is read from the YAML file under
//     its name and can be set by its KYCSTATE_* variable; the whole of it is checked, and
//     its secrets read, before anything starts. An error names the key (and the line) and
//     never holds a secret's value.
//   - Main.Run opens everything that can fail before it starts a goroutine, closing what
//     it opened in reverse when a step fails, and stops in the order of the durability
//     contract: no webhook is accepted any more, every one in flight gets its append and
//     its answer, then the readers stop and the event log closes. When Run returns, every
//     goroutine it started has ended.
package main
