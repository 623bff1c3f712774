//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import "os"

// unlockFile is a no-op where bbolt does not lock with flock; closing the file releases
// its lock there.
func unlockFile(*os.File) {}
