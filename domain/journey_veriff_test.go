package domain

import "testing"

// The Veriff column of DESIGN.md section 13 with Veriff's event names: the decision
// webhook (stored as "decision") carries verification.status, an event webhook its
// action as both type and status.
const veriffClassifyTable = `
type         providerStatus          class    status
decision     approved                status   APPROVED
decision     declined                status   REJECTED
decision     review                  status   IN_REVIEW
decision     resubmission_requested  status   INCOMPLETE
decision     expired                 status   INCOMPLETE
decision     abandoned               status   INCOMPLETE
decision     submitted               status   IN_PROGRESS
decision     started                 status   INCOMPLETE
started      started                 status   INCOMPLETE
submitted    submitted               status   IN_PROGRESS
decision     created                 unknown  -
decision     Approved                unknown  -
decision     -                       unknown  -
resubmitted  resubmitted             unknown  -
-            approved                unknown  -
applicantApproved -                  unknown  -
`

// veriffJourneyGrid: a first event of any kind is regular (no creation is notified, the
// event webhook is optional); approved and declined are final.
const veriffJourneyGrid = `
from         INIT INCOMPLETE IN_PROGRESS ON_HOLD IN_REVIEW COMPLETED APPROVED REJECTED
-            I    A          A           I       A         I         A        A
INIT         =    I          I           I       I         I         I        I
INCOMPLETE   I    =          A           I       A         I         A        A
IN_PROGRESS  I    A          =           I       A         I         A        A
ON_HOLD      I    I          I           =       I         I         I        I
IN_REVIEW    I    A          I           I       =         I         A        A
COMPLETED    I    I          I           I       I         =         I        I
APPROVED     I    I          I           I       I         I         =        I
REJECTED     I    I          I           I       I         I         I        =
`

func TestClassifyVeriff(t *testing.T) { checkClassify(t, ProviderVeriff, veriffClassifyTable) }

func TestJourneyVeriff(t *testing.T) { checkJourney(t, journeyVeriff(), veriffJourneyGrid) }
