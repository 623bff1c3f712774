// Secrets: a config value that is a key or a token is given literally, as env:NAME or as
// file:PATH, is read only when the config is resolved, and never prints.

package main

import (
	"errors"
	"os"
	"strings"
)

// Secret is a config value given literally, as env:NAME or as file:PATH. It never prints.
type Secret string

func (Secret) String() string   { return "[secret]" }
func (Secret) GoString() string { return "[secret]" }

// resolve returns the secret's value: literal, env:NAME or file:PATH. Errors name the key
// and the variable or file, never the value.
func (s Secret) resolve(key string, getenv func(string) string) (string, error) {
	v := string(s)
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		val := getenv(name)
		if val == "" {
			return "", cfgErr(key, "environment variable %s is empty or unset", name)
		}
		return val, nil
	case strings.HasPrefix(v, "file:"):
		p := strings.TrimPrefix(v, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			return "", cfgErr(key, "cannot read secret file %s: %v", p, errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	}
	return v, nil
}
