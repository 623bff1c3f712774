package client

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestStateAppendJSON holds State.AppendJSON to json.Marshal. Every field is filled by
// reflection (a field added to State is filled too, and fails here until AppendJSON
// encodes it), with strings that need escaping, nil and empty lists, nil pointers, and
// times in other zones and with nanoseconds.
func TestStateAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	strs := []string{"", "approved", "6f0c4a7e-1b2d-4c3e-9f00-0123456789ab", "<b>&amp;</b>", "é\u2028\u2029\xff",
		"\x00\b\f\n\r\t\"\\", "a long step name that passes the eight-byte word test"}
	times := []time.Time{{}, time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		time.Date(2025, 6, 7, 8, 9, 10, 5000, time.FixedZone("x", 5*3600+1800)), time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC)}
	timeType := reflect.TypeFor[Time]()
	var fill func(v reflect.Value, full bool)
	fill = func(v reflect.Value, full bool) {
		switch {
		case v.Type() == timeType:
			v.Set(reflect.ValueOf(Time(times[r.IntN(len(times))])))
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i), full)
			}
		case v.Kind() == reflect.String:
			v.SetString(strs[r.IntN(len(strs))])
		case v.Kind() == reflect.Pointer:
			if full || r.IntN(2) == 0 {
				v.Set(reflect.New(v.Type().Elem()))
				fill(v.Elem(), full)
			}
		case v.Kind() == reflect.Slice:
			if !full && r.IntN(3) == 0 {
				return // nil
			}
			n := r.IntN(4)
			if full {
				n++
			}
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				fill(v.Index(i), full)
			}
		case v.Kind() == reflect.Bool:
			v.SetBool(full || r.IntN(2) == 0)
		case v.CanInt():
			v.SetInt(r.Int64N(1<<40) - 1<<20)
		case v.CanUint():
			v.SetUint(r.Uint64())
		default:
			t.Fatalf("State has a %s field the test cannot fill", v.Type())
		}
	}
	for i := range 20_000 {
		var s State
		fill(reflect.ValueOf(&s).Elem(), i%4 == 0)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.AppendJSON([]byte("x")); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
}
