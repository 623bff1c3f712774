// Package store is kycstate's persistence: the JetStream event log (the source of truth)
// and the bbolt projection folded from it. It is the only package that imports bbolt or
// builds JetStream streams; callers see domain types.
package store
