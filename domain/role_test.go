package domain

import "testing"

// TestRolesOrdered restates DESIGN.md section 7's order, reader ⊂ auditor ⊂ admin, cell
// by cell, with unknown roles allowed nothing.
func TestRolesOrdered(t *testing.T) {
	for _, tc := range []struct {
		r, need Role
		want    bool
	}{
		{RoleReader, RoleReader, true}, {RoleReader, RoleAuditor, false}, {RoleReader, RoleAdmin, false},
		{RoleAuditor, RoleReader, true}, {RoleAuditor, RoleAuditor, true}, {RoleAuditor, RoleAdmin, false},
		{RoleAdmin, RoleReader, true}, {RoleAdmin, RoleAuditor, true}, {RoleAdmin, RoleAdmin, true},
		{"", RoleReader, false}, {"root", RoleReader, false}, {"Admin", RoleReader, false},
		{"", "", false}, {"root", "root", false},
	} {
		if got := tc.r.Allows(tc.need); got != tc.want {
			t.Errorf("%q.Allows(%q) = %v, want %v", tc.r, tc.need, got, tc.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"reader", "auditor", "admin"} {
		r, err := ParseRole(s)
		if err != nil || string(r) != s || !r.Valid() {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	// Configured roles are exact: a case variant or padding is a typo to report, not a
	// role to guess.
	for _, s := range []string{"", "root", "Reader", "ADMIN", " auditor", "auditor\x00"} {
		r, err := ParseRole(s)
		if KindOf(err) != KindInvalid || r != "" {
			t.Errorf("ParseRole(%q) = %q, %v; want invalid", s, r, err)
		}
	}
}

// FuzzParseRole: a role parses exactly when it is one of the three, and then as itself.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{"reader", "auditor", "admin", "", "root", "Admin"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRole(s)
		known := s == "reader" || s == "auditor" || s == "admin"
		switch {
		case known && (err != nil || r != Role(s)):
			t.Fatalf("ParseRole(%q) = %q, %v", s, r, err)
		case !known && (err == nil || KindOf(err) != KindInvalid):
			t.Fatalf("ParseRole(%q) = %q, %v; want invalid", s, r, err)
		}
	})
}
