//go:build !kycstate_testhooks

package main

// installTestHooks does nothing in the production build: the crash tests' hooks exist
// only in a binary built with -tags kycstate_testhooks (testhooks.go).
func installTestHooks(*env, *Main) {}
