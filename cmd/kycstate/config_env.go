// Environment overrides: every config key has a KYCSTATE_* variable, found by walking the
// Config type, so a new key needs no code here.

package main

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// applyEnv sets every KYCSTATE_<PATH> variable onto the matching key. Variables apply in
// name order, whatever order the environment holds them in, so a whole list
// (KYCSTATE_KEYS_PREVIOUS) comes before an index into it (KYCSTATE_KEYS_PREVIOUS_2).
func applyEnv(cfg *Config, environ []string) error {
	environ = slices.Clone(environ)
	slices.SortStableFunc(environ, func(a, b string) int {
		a, _, _ = strings.Cut(a, "=")
		b, _, _ = strings.Cut(b, "=")
		return strings.Compare(a, b)
	})
	st := envState{fillers: map[string]filler{}, set: map[string]bool{}}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "KYCSTATE_") {
			continue
		}
		path := strings.ToLower(strings.TrimPrefix(name, "KYCSTATE_"))
		if !isConfigKey(path) {
			// Not ours: a secret that a config value names with env:, say.
			continue
		}
		if err := setPath(reflect.ValueOf(cfg).Elem(), path, "", val, name, &st); err != nil {
			return err
		}
	}
	return st.gap()
}

// envState is what applyEnv learns across variables: the list elements that an index
// created only to reach itself, and the elements some variable set.
type envState struct {
	fillers map[string]filler // by element path, apps[3]
	set     map[string]bool
}

type filler struct {
	list         string // apps[0].previous_keys
	index        int    // the filler's
	envName      string // the variable whose index made it
	envNameIndex int    // that variable's index
}

// gap returns an error for a filler no variable set: the list would have a zero element
// there, which resolveConfig would report under a name the user never wrote. Checked after
// every variable, since KYCSTATE_APPS_2_NAME may come before KYCSTATE_APPS_1_NAME.
func (st *envState) gap() error {
	var gaps []filler
	for p, f := range st.fillers {
		if !st.set[p] {
			gaps = append(gaps, f)
		}
	}
	if len(gaps) == 0 {
		return nil
	}
	f := slices.MinFunc(gaps, func(a, b filler) int {
		if c := strings.Compare(a.list, b.list); c != 0 {
			return c
		}
		return a.index - b.index
	})
	return cfgErr(f.envName, "index %d leaves a gap in %s: the next index is %d", f.envNameIndex, f.list, f.index)
}

// isConfigKey reports whether path starts with a top-level config key. Variables under a
// known key must match a key exactly (a typo is an error); others are left alone.
func isConfigKey(path string) bool {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if path == key || strings.HasPrefix(path, key+"_") {
			return true
		}
	}
	return false
}

// setPath walks path ("apps_0_secret_key") through v's yaml keys and sets the leaf; key is
// the dotted path walked so far (apps[0]), for envState.
func setPath(v reflect.Value, path, key, val, envName string, st *envState) error {
	for path != "" {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
			continue
		case reflect.Struct:
			i, rest, ok := fieldByEnvPath(v.Type(), path)
			if !ok {
				return cfgErr(envName, "no such config key")
			}
			name := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
			if key != "" {
				name = key + "." + name
			}
			v, path, key = v.Field(i), rest, name
			continue
		case reflect.Slice:
			idxStr, rest, _ := strings.Cut(path, "_")
			idx, err := strconv.Atoi(idxStr)
			if err != nil || idx < 0 || idx > 64 {
				return cfgErr(envName, "list index must be a number from 0 to 64")
			}
			for v.Len() < idx {
				st.fillers[fmt.Sprintf("%s[%d]", key, v.Len())] = filler{list: key, index: v.Len(), envName: envName, envNameIndex: idx}
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			}
			if v.Len() == idx {
				v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
			}
			key = fmt.Sprintf("%s[%d]", key, idx)
			st.set[key] = true
			v, path = v.Index(idx), rest
			continue
		}
		return cfgErr(envName, "no such config key")
	}
	return setLeaf(v, val, envName)
}

// fieldByEnvPath finds the field of struct type t that path ("batch_wait", "apps_0_name")
// starts with: a key equal to path, else the longest key followed by "_", so batch_wait
// is not read as batch. It returns the field's index and the rest of path.
func fieldByEnvPath(t reflect.Type, path string) (int, string, bool) {
	best, bestLen := -1, 0
	for i := range t.NumField() {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if path == key {
			return i, "", true
		}
		if strings.HasPrefix(path, key+"_") && len(key) > bestLen {
			best, bestLen = i, len(key)
		}
	}
	if best < 0 {
		return 0, "", false
	}
	return best, path[bestLen+1:], true
}

// setLeaf sets v from one variable's value, parsed as v's type.
func setLeaf(v reflect.Value, val, envName string) error {
	if v.Kind() == reflect.Pointer {
		// Set like the element; the pointer is only how the file tells unset from false.
		p := reflect.New(v.Type().Elem())
		if err := setLeaf(p.Elem(), val, envName); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
			if err := u.UnmarshalText([]byte(val)); err != nil {
				return cfgErr(envName, "%v", err)
			}
			return nil
		}
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(val)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return cfgErr(envName, "not an integer")
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return cfgErr(envName, "not a number")
		}
		v.SetFloat(f)
	case reflect.Uint64:
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return cfgErr(envName, "not a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return cfgErr(envName, "not true or false")
		}
		v.SetBool(b)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return cfgErr(envName, "is a list of mappings: set its elements by index, like %s",
				firstKeyEnv(envName+"_0", v.Type().Elem()))
		}
		if v.Type().Elem().Kind() != reflect.String {
			return cfgErr(envName, "cannot be set from the environment")
		}
		// A whole list, comma-separated, replacing the file's; empty is the empty list.
		l := reflect.MakeSlice(v.Type(), 0, 0)
		if val != "" {
			for i, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s == "" {
					return cfgErr(envName, "element %d of the comma-separated list is empty", i)
				}
				e := reflect.New(v.Type().Elem()).Elem()
				e.SetString(s)
				l = reflect.Append(l, e)
			}
		}
		v.Set(l)
	case reflect.Struct:
		return cfgErr(envName, "is a mapping: set its keys, like %s", firstKeyEnv(envName, v.Type()))
	default:
		return cfgErr(envName, "cannot be set from the environment")
	}
	return nil
}

// firstKeyEnv names the variable of struct type t's first key under prefix, for examples.
func firstKeyEnv(prefix string, t reflect.Type) string {
	return prefix + "_" + strings.ToUpper(strings.Split(t.Field(0).Tag.Get("yaml"), ",")[0])
}
