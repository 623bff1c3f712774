package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// Report is what a run did and found.
type Report struct {
	Applicants int // journeys planned
	// Webhooks counts every request sent to the webhook endpoint: deliveries, resends,
	// forgeries and retries.
	Webhooks int
	// Deliveries are events sent for the first time; Resends identical bodies sent again;
	// Late deliveries acknowledged after a newer status event of the same applicant;
	// BadSignatures forged copies sent; Retries attempts repeated after a 5xx, 408, 429
	// or no answer.
	Deliveries, Resends, Late, BadSignatures, Retries int
	Answers                                           Answers
	// Latency of the 200 answers.
	Latency Latency
	// Elapsed is the sending phase's duration; Rate is Webhooks per second over it.
	Elapsed time.Duration
	Rate    float64
	// MaxSeq is the highest stream sequence the service acknowledged.
	MaxSeq uint64
	// Outcomes counts the fold's decisions over the acknowledged events (the expectation):
	// late deliveries show up as stale.
	Outcomes map[domain.Outcome]int
	// Lost counts genuine deliveries never acknowledged, even after retries.
	Lost int
	// GivenUp counts deliveries never sent (Config.GiveUpShare); GaveUpOn the applicants
	// that missed at least one.
	GivenUp, GaveUpOn int
	// Reconciled counts the service's checks by action (appended: a divergence found and
	// fixed), OpenAPICalls the calls the sim's Open API answered during them, and
	// ReconcileElapsed how long they took. Empty without a reconciliation.
	Reconciled       map[string]int
	OpenAPICalls     int
	ReconcileElapsed time.Duration
	// Checked is how many applicants were compared with the read API.
	Checked int
	// Mismatches lists each difference between the read API and the expectation, one
	// line per applicant and field.
	Mismatches []string
	// Problems lists answers that break the contract: a resend stored twice, a forged
	// webhook accepted or not answered 401, lost webhooks.
	Problems []string
}

// Answers counts the webhook endpoint's answers, one per attempt.
type Answers struct {
	OK           int // 200 duplicate:false
	Duplicate    int // 200 duplicate:true
	Unauthorized int // 401
	Other        int // anything else, and no answer at all
}

// Latency summarises the time to a 200 answer.
type Latency struct {
	P50, P90, P99, Max time.Duration
}

// OK reports whether the run found nothing wrong: no mismatch, no lost webhook, no
// contract violation.
func (r Report) OK() bool {
	return len(r.Mismatches) == 0 && r.Lost == 0 && len(r.Problems) == 0
}

// addAll adds every journey's result (nil: a journey that never started), then the
// latency summary and the rate over Elapsed.
func (r *Report) addAll(results []*result) {
	var latencies []time.Duration
	for _, res := range results {
		if res != nil {
			r.add(res)
			latencies = append(latencies, res.latencies...)
		}
	}
	r.Latency = newLatency(latencies)
	if s := r.Elapsed.Seconds(); s > 0 {
		r.Rate = float64(r.Webhooks) / s
	}
}

func (r *Report) add(res *result) {
	r.Webhooks += res.webhooks
	r.Deliveries += res.deliveries
	r.Resends += res.resends
	r.Late += res.late
	r.BadSignatures += res.forgeries
	r.Retries += res.retries
	r.Answers.OK += res.answers.OK
	r.Answers.Duplicate += res.answers.Duplicate
	r.Answers.Unauthorized += res.answers.Unauthorized
	r.Answers.Other += res.answers.Other
	if res.lost {
		r.Lost++
	}
	r.GivenUp += res.givenUp
	if res.givenUp > 0 {
		r.GaveUpOn++
	}
	r.MaxSeq = max(r.MaxSeq, res.maxSeq)
	for o, n := range res.outcomes {
		r.Outcomes[o] += n
	}
	r.Problems = append(r.Problems, res.problems...)
}

func newLatency(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.5) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ds[len(ds)-1]}
}

// maxListed bounds the mismatches and problems Print lists; the counts are complete.
const maxListed = 20

// Print writes the report for a person.
func (r Report) Print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "webhooks sent      %d in %s (%.1f/s)\n", r.Webhooks, r.Elapsed.Round(time.Millisecond), r.Rate)
	fmt.Fprintf(w, "  deliveries       %d (%d late), resends %d, bad signatures %d, retries %d\n",
		r.Deliveries, r.Late, r.Resends, r.BadSignatures, r.Retries)
	fmt.Fprintf(w, "answers            200 %d, 200 duplicate %d, 401 %d, other %d\n",
		r.Answers.OK, r.Answers.Duplicate, r.Answers.Unauthorized, r.Answers.Other)
	fmt.Fprintf(w, "latency of 200 ms  p50 %s, p90 %s, p99 %s, max %s\n",
		ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max))
	var outs []string
	for _, o := range sortedOutcomes(r.Outcomes) {
		outs = append(outs, fmt.Sprintf("%s %d", o, r.Outcomes[o]))
	}
	if len(outs) == 0 {
		outs = []string{"none"}
	}
	fmt.Fprintf(w, "expected outcomes  %s\n", strings.Join(outs, ", "))
	fmt.Fprintf(w, "highest seq        %d\n", r.MaxSeq)
	fmt.Fprintf(w, "applicants         %d planned, %d checked, %d with a lost webhook\n", r.Applicants, r.Checked, r.Lost)
	if r.GivenUp > 0 {
		fmt.Fprintf(w, "given up           %d webhooks never delivered, of %d applicants\n", r.GivenUp, r.GaveUpOn)
	}
	if r.Reconciled != nil {
		fmt.Fprintf(w, "reconciled         %d checked in %s: appended %d (divergences fixed), in_sync %d, not_found %d, error %d; %d Open API calls\n",
			r.Reconciled["appended"]+r.Reconciled["in_sync"]+r.Reconciled["not_found"]+r.Reconciled["error"],
			r.ReconcileElapsed.Round(time.Millisecond), r.Reconciled["appended"], r.Reconciled["in_sync"],
			r.Reconciled["not_found"], r.Reconciled["error"], r.OpenAPICalls)
	}
	fmt.Fprintf(w, "mismatches         %d\n", len(r.Mismatches))
	list(w, r.Mismatches)
	fmt.Fprintf(w, "problems           %d\n", len(r.Problems))
	list(w, r.Problems)
	if r.OK() {
		fmt.Fprintln(w, "result             OK")
	} else {
		fmt.Fprintln(w, "result             FAILED")
	}
}

func list(w io.Writer, lines []string) {
	for i, l := range lines {
		if i == maxListed {
			fmt.Fprintf(w, "  ... and %d more\n", len(lines)-maxListed)
			return
		}
		fmt.Fprintf(w, "  %s\n", l)
	}
}
