package projection

import (
	"fmt"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// The cache stays within its bound, refuses a state read before a drop, and hands out
// copies. (TestReadsDuringApply holds Projection.State to the checkpoint with the cache
// in use, while batches land.)
func TestStateCache(t *testing.T) {
	var c stateCache
	for i := range 2 * stateCacheSize {
		c.put(domain.ApplicantKey(fmt.Sprint(i)), domain.State{Events: i}, c.generation())
	}
	if n := len(c.m); n != stateCacheSize {
		t.Fatalf("%d entries, bound %d", n, stateCacheSize)
	}
	gen := c.generation()
	c.drop([]domain.ApplicantKey{"x"})
	c.put("stale", domain.State{Events: 1}, gen)
	if _, ok := c.get("stale"); ok {
		t.Fatal("a state read before a drop was kept")
	}
	c.put("a", domain.State{StepsPassed: []string{"document"}}, c.generation())
	got, ok := c.get("a")
	if !ok {
		t.Fatal("not kept")
	}
	got.StepsPassed[0] = "MUTATED"
	if again, _ := c.get("a"); again.StepsPassed[0] != "document" {
		t.Fatalf("changing what get returned changed the cache: %v", again.StepsPassed)
	}
	c.drop([]domain.ApplicantKey{"a"})
	if _, ok := c.get("a"); ok {
		t.Fatal("dropped, still there")
	}
}
