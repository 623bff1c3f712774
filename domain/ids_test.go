package domain

import (
	"strings"
	"testing"
)

func TestParseUUID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"71f2c0c6-c720-423b-8df0-7763102ad57e", "71f2c0c6-c720-423b-8df0-7763102ad57e", true},
		{"71F2C0C6-C720-423B-8DF0-7763102AD57E", "71f2c0c6-c720-423b-8df0-7763102ad57e", true},
		{"", "", false},
		{"71f2c0c6c720423b8df07763102ad57e", "", false},
		{"71f2c0c6-c720-423b-8df0-7763102ad57", "", false},
		{"71f2c0c6-c720-423b-8df0-7763102ad57e0", "", false},
		{"71f2c0c6-c720-423b-8df0-7763102ad5.>", "", false},
		{"71f2c0c6_c720-423b-8df0-7763102ad57e", "", false},
		{"g1f2c0c6-c720-423b-8df0-7763102ad57e", "", false},
		{"71f2c0c6-c720-423b-8df0-7763102ad5\u00e9", "", false},
	} {
		got, ok := ParseUUID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseUUID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if _, err := ParseApplicantID("nope"); KindOf(err) != KindInvalid {
		t.Errorf("ParseApplicantID(nope): kind %v, want invalid", KindOf(err))
	}
	if _, err := ParseAppKey("nope"); KindOf(err) != KindInvalid {
		t.Errorf("ParseAppKey(nope): kind %v, want invalid", KindOf(err))
	}
	if IsCanonicalUUID("71F2C0C6-C720-423B-8DF0-7763102AD57E") {
		t.Error("upper case is not canonical")
	}
	for range 100 {
		if u := NewUUID(); !IsCanonicalUUID(u) || u[14] != '4' {
			t.Fatalf("NewUUID() = %q: not a canonical v4 UUID", u)
		}
	}
}

func FuzzParseUUID(f *testing.F) {
	f.Add("71f2c0c6-c720-423b-8df0-7763102ad57e")
	f.Add("71F2C0C6-C720-423B-8DF0-7763102AD57E")
	f.Add("71f2c0c6-c720-423b-8df0-7763102ad57g")
	f.Add("71f2c0c6+c720-423b-8df0-7763102ad57e")
	f.Fuzz(func(t *testing.T, s string) {
		u, ok := ParseUUID(s)
		if want := ok && u == s; IsCanonicalUUID(s) != want {
			t.Fatalf("IsCanonicalUUID(%q) = %v, want %v", s, !want, want)
		}
		if !ok {
			return
		}
		if !IsCanonicalUUID(u) {
			t.Fatalf("ParseUUID(%q) = %q, not canonical", s, u)
		}
		if again, _ := ParseUUID(u); again != u {
			t.Fatalf("not idempotent: %q -> %q", u, again)
		}
	})
}

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]Status{
		"APPROVED": StatusApproved, "approved": StatusApproved, "In_Review": StatusInReview,
		"in_progress": StatusInProgress, "init": StatusInit,
		"ınit": "", "ın_revıew": "", "IN_PROGREſſ": "", "ＡPPROVED": "", "": "", "APPROVED ": "", "NONE": "",
	} {
		got, ok := ParseStatus(in)
		if ok != (want != "") || (ok && got != want) {
			t.Errorf("ParseStatus(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParseProviderID(t *testing.T) {
	long := strings.Repeat("a", MaxProviderID)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"inq_ABC123", true}, {"5f1a-B_9", true}, {long, true},
		{"", false}, {long + "a", false}, {"a.b", false}, {"a*", false}, {"a>", false},
		{"a b", false}, {"a\x00", false}, {"é", false}, {"a/b", false},
	} {
		id, err := ParseProviderID(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseProviderID(%q) = %q, %v; want ok %v", tc.in, id, err, tc.ok)
			continue
		}
		if err == nil && string(id) != tc.in {
			t.Errorf("ParseProviderID(%q) = %q; want it verbatim", tc.in, id)
		}
		if err != nil && KindOf(err) != KindInvalid {
			t.Errorf("ParseProviderID(%q): kind %v, want invalid", tc.in, KindOf(err))
		}
	}
}
