// The YAML walk: the file's unknown keys and wrong types, named by their dotted path and
// line, without quoting a value (it may be a secret).

package main

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileProblem walks a YAML node alongside the config type t and returns the line of the
// first key t does not have, or of the first value that does not fit its key's type, and
// what is wrong, with the key's dotted path (apps[0].open_api.privat_key); line 0 when all
// is well. yaml's own messages name only the Go type a key was not found in, and for a
// value the line but not the key (which a flow mapping, ingest: {max_body: abc,
// max_in_flight: 7}, leaves ambiguous) and they quote the value, which may be a secret:
// what a value must be comes from the type here, so no value is shown.
func fileProblem(n *yaml.Node, t reflect.Type, path string) (line int, problem string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if path != "" {
				key = path + "." + k.Value
			}
			f, ok := fieldByYAMLKey(t, k.Value)
			if !ok {
				return k.Line, "unknown key " + key
			}
			if line, problem := fileProblem(v, f.Type, key); line != 0 {
				return line, problem
			}
		}
		return 0, ""
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, v := range n.Content {
			if line, problem := fileProblem(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); line != 0 {
				return line, problem
			}
		}
		return 0, ""
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		if path == "" {
			return n.Line, "the file must be " + typeWant(t)
		}
		return n.Line, path + ": must be " + typeWant(t)
	}
	return 0, ""
}

// typeWant says what a value of config type t looks like.
func typeWant(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "a duration (like 5s or 2m)"
	case t.Kind() == reflect.Struct:
		return "a mapping of keys"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Uint64:
		return "a non-negative integer"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "an integer"
	}
	return "a string"
}

func fieldByYAMLKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name := strings.Split(f.Tag.Get("yaml"), ",")[0]; name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlMessage keeps yaml's line-numbered message but drops quoted values, which may be secrets.
func yamlMessage(err error) string {
	msg := err.Error()
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		if i := strings.Index(line, "`"); i >= 0 {
			line = line[:i] + "(value not shown)"
		}
		out = append(out, strings.TrimSpace(line))
	}
	return strings.Join(out, "; ")
}
