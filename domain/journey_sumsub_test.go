package domain

import "testing"

// The Sumsub column of DESIGN.md section 13 with Sumsub's webhook types
// (https://docs.sumsub.com/docs/user-verification-webhooks): an applicantReviewed's
// providerStatus is its review answer, RED with its reject type.
const sumsubClassifyTable = `
type                            providerStatus  class       status
applicantCreated                init            status      INIT
applicantCreated                -               status      INIT
applicantPending                pending         status      IN_PROGRESS
applicantOnHold                 onHold          status      ON_HOLD
applicantReset                  init            status      INCOMPLETE
applicantReviewed               GREEN           status      APPROVED
applicantReviewed               RED+RETRY       status      INCOMPLETE
applicantReviewed               RED+FINAL       status      REJECTED
applicantReviewed               RED             unknown     -
applicantReviewed               YELLOW          unknown     -
applicantReviewed               green           unknown     -
applicantReviewed               completed       unknown     -
applicantReviewed               -               unknown     -
applicantPrechecked             prechecked      annotation  -
applicantPersonalInfoChanged    -               annotation  -
applicantTagsChanged            -               annotation  -
applicantLevelChanged           -               annotation  -
applicantActivated              -               annotation  -
applicantDeactivated            -               annotation  -
applicantDeleted                -               annotation  -
applicantPersonalDataDeleted    -               annotation  -
applicantActionPending          pending         annotation  -
applicantActionReviewed         GREEN           annotation  -
applicantActionOnHold           onHold          annotation  -
applicantWorkflowCompleted      RED+FINAL       annotation  -
videoIdentStatusChanged         -               annotation  -
videoIdentCompositionCompleted  -               annotation  -
applicantKytTxnApproved         -               unknown     -
applicantApproved               -               unknown     -
applicantErased                 -               unknown     -
inquiry.approved                approved        unknown     -
-                               -               unknown     -
`

// sumsubJourneyGrid: created, pending, on hold, reviewed; a RETRY or a reset goes back to
// resubmitting; re-reviews flip the decision; an approved applicant may be checked again.
const sumsubJourneyGrid = `
from         INIT INCOMPLETE IN_PROGRESS ON_HOLD IN_REVIEW COMPLETED APPROVED REJECTED
-            A    I          I           I       I         I         I        I
INIT         =    I          A           I       I         I         I        I
INCOMPLETE   I    =          A           I       I         I         I        I
IN_PROGRESS  I    A          =           A       I         I         A        A
ON_HOLD      I    A          I           =       I         I         A        A
IN_REVIEW    I    I          I           I       =         I         I        I
COMPLETED    I    I          I           I       I         =         I        I
APPROVED     I    A          A           I       I         I         =        A
REJECTED     I    A          I           I       I         I         A        =
`

func TestClassifySumsub(t *testing.T) { checkClassify(t, ProviderSumsub, sumsubClassifyTable) }

func TestJourneySumsub(t *testing.T) { checkJourney(t, journeySumsub(), sumsubJourneyGrid) }
