package domain

import "testing"

// The Persona column of DESIGN.md section 13, with inquiry.failed, which Persona
// documents (https://docs.withpersona.com/docs/models-lifecycle) and the section leaves
// out. providerStatus is the inquiry's status.
const personaClassifyTable = `
type                              providerStatus  class       status
inquiry.created                   created         status      INIT
inquiry.started                   pending         status      INCOMPLETE
inquiry.expired                   expired         status      INCOMPLETE
inquiry.completed                 completed       status      COMPLETED
inquiry.failed                    failed          status      REJECTED
inquiry.marked-for-review         needs_review    status      IN_REVIEW
inquiry.approved                  approved        status      APPROVED
inquiry.approved                  -               status      APPROVED
inquiry.declined                  declined        status      REJECTED
inquiry.transitioned              approved        annotation  -
inquiry.redacted                  approved        annotation  -
inquiry.updated-tags              approved        annotation  -
inquiry.reusable-persona-created  approved        annotation  -
inquiry.needs_review              needs_review    unknown     -
inquiry.Approved                  approved        unknown     -
verification.passed               -               unknown     -
account.created                   -               unknown     -
applicantApproved                 -               unknown     -
-                                 approved        unknown     -
`

// personaJourneyGrid: created, pending, then done (completed, failed or expired), then
// the optional post-inquiry decisions, which may overrule a failure and each other.
const personaJourneyGrid = `
from         INIT INCOMPLETE IN_PROGRESS ON_HOLD IN_REVIEW COMPLETED APPROVED REJECTED
-            A    I          I           I       I         I         I        I
INIT         =    A          I           I       I         I         I        I
INCOMPLETE   I    =          I           I       I         A         I        A
IN_PROGRESS  I    I          =           I       I         I         I        I
ON_HOLD      I    I          I           =       I         I         I        I
IN_REVIEW    I    I          I           I       =         I         A        A
COMPLETED    I    I          I           I       A         =         A        A
APPROVED     I    I          I           I       I         I         =        A
REJECTED     I    I          I           I       A         I         A        =
`

func TestClassifyPersona(t *testing.T) { checkClassify(t, ProviderPersona, personaClassifyTable) }

func TestJourneyPersona(t *testing.T) { checkJourney(t, journeyPersona(), personaJourneyGrid) }
