package domain

import "testing"

// The Onfido workflow run column of DESIGN.md section 13, with the run statuses it leaves
// out (awaiting_client_input, error) and the run's other events.
const onfidoClassifyTable = `
type                                  providerStatus         class       status
workflow_run.completed                approved               status      APPROVED
workflow_run.completed                declined               status      REJECTED
workflow_run.completed                review                 status      IN_REVIEW
workflow_run.completed                abandoned              status      INCOMPLETE
workflow_run.completed                awaiting_input         status      INCOMPLETE
workflow_run.completed                processing             status      IN_PROGRESS
workflow_run.completed                awaiting_client_input  status      ON_HOLD
workflow_run.completed                error                  annotation  -
workflow_run.completed                complete               unknown     -
workflow_run.completed                -                      unknown     -
workflow_task.started                 started                annotation  -
workflow_task.completed               completed              annotation  -
workflow_timeline_file.created        -                      annotation  -
workflow_run_evidence_folder.created  -                      annotation  -
check.completed                       complete               unknown     -
report.completed                      complete               unknown     -
workflow_run.created                  processing             unknown     -
-                                     approved               unknown     -
`

// onfidoJourneyGrid: a first event of any kind is regular (no run's creation is
// notified); processing and the two waits alternate; approved and declined are final.
const onfidoJourneyGrid = `
from         INIT INCOMPLETE IN_PROGRESS ON_HOLD IN_REVIEW COMPLETED APPROVED REJECTED
-            I    A          A           A       A         I         A        A
INIT         =    I          I           I       I         I         I        I
INCOMPLETE   I    =          A           I       I         I         I        I
IN_PROGRESS  I    A          =           A       A         I         A        A
ON_HOLD      I    I          A           =       A         I         A        A
IN_REVIEW    I    I          I           I       =         I         A        A
COMPLETED    I    I          I           I       I         =         I        I
APPROVED     I    I          I           I       I         I         =        I
REJECTED     I    I          I           I       I         I         I        =
`

func TestClassifyOnfido(t *testing.T) { checkClassify(t, ProviderOnfido, onfidoClassifyTable) }

func TestJourneyOnfido(t *testing.T) { checkJourney(t, journeyOnfido(), onfidoJourneyGrid) }
