package domain

import "fmt"

// Role is what a bearer token may do (DESIGN.md section 7). Roles are ordered, each
// allowed what the ones before it are: reader ⊂ auditor ⊂ admin. The read API, the
// console and the configuration all use this one type, so a route and a page that need
// the same role agree on who may use them.
type Role string

const (
	// RoleReader reads applicants' current state, the lists and the change feed.
	RoleReader Role = "reader"
	// RoleAuditor also reads history, anomalies and point-in-time state, and verifies.
	RoleAuditor Role = "auditor"
	// RoleAdmin may also erase (DESIGN.md section 11).
	RoleAdmin Role = "admin"
)

// rank orders the roles; 0 is no role.
func (r Role) rank() int {
	switch r {
	case RoleReader:
		return 1
	case RoleAuditor:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether a holder of role r may do what needs role need. An unknown role
// allows nothing, whatever need is.
func (r Role) Allows(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// ParseRole reads a role as configured: exactly "reader", "auditor" or "admin".
// Errors: KindInvalid.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", E("domain.ParseRole", KindInvalid, fmt.Sprintf("role %q is not reader, auditor or admin", s))
	}
	return r, nil
}
