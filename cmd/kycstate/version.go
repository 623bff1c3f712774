package main

import (
	"context"
	"fmt"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "version", "Prints the version.")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "kycstate", Version)
	return nil
}
