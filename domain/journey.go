package domain

import (
	"slices"

	"github.com/looplab/fsm"
)

// classifyByName classifies an event by its name alone, as most of a provider's table
// does: a status event when statuses names it (with its status), an annotation when
// annotations does, else unknown: stored and shown, no effect.
func classifyByName(t EventType, statuses map[EventType]Status, annotations []EventType) (Class, Status) {
	if s, ok := statuses[t]; ok {
		return ClassStatus, s
	}
	if slices.Contains(annotations, t) {
		return ClassAnnotation, StatusNone
	}
	return ClassUnknown, StatusNone
}

// A provider's journey (journeySumsub, journeyPersona, ...) is the order of statuses its
// docs describe, stated as steps: each step is one looplab/fsm event, named by the status
// it leads to, and regular from the statuses it lists. StatusNone among them is "no
// status yet" (the machine's fsmNew): the step may come first.
type journeyStep struct {
	to   Status
	from []Status
}

// step is the step into status to, regular from the statuses from.
func step(to Status, from ...Status) journeyStep { return journeyStep{to, from} }

// journey builds the looplab/fsm events of steps.
func journey(steps ...journeyStep) fsm.Events {
	events := make(fsm.Events, len(steps))
	for i, s := range steps {
		src := make([]string, len(s.from))
		for j, f := range s.from {
			src[j] = string(f)
			if f == StatusNone {
				src[j] = fsmNew
			}
		}
		events[i] = fsm.EventDesc{Name: string(s.to), Src: src, Dst: string(s.to)}
	}
	return events
}
