-- AlterTable
ALTER TABLE "Action" ADD COLUMN     "approvalsRequired" INTEGER NOT NULL DEFAULT 1,
ADD COLUMN     "revision" INTEGER NOT NULL DEFAULT 1;

-- AlterTable
ALTER TABLE "SafetyRule" ADD COLUMN     "approvalsRequired" INTEGER;

-- CreateTable
CREATE TABLE "ActionRevision" (
    "id" UUID NOT NULL,
    "actionId" UUID NOT NULL,
    "revision" INTEGER NOT NULL,
    "payload" JSONB NOT NULL,
    "payloadHash" TEXT NOT NULL,
    "author" TEXT NOT NULL,
    "diff" JSONB,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ActionRevision_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ApprovalDecision" (
    "id" UUID NOT NULL,
    "actionId" UUID NOT NULL,
    "approver" TEXT NOT NULL,
    "decision" TEXT NOT NULL,
    "comment" TEXT,
    "revision" INTEGER NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ApprovalDecision_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "ActionRevision_actionId_revision_key" ON "ActionRevision"("actionId", "revision");

-- CreateIndex
CREATE INDEX "ApprovalDecision_actionId_createdAt_idx" ON "ApprovalDecision"("actionId", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "ApprovalDecision_actionId_revision_approver_key" ON "ApprovalDecision"("actionId", "revision", "approver");

-- AddForeignKey
ALTER TABLE "ActionRevision" ADD CONSTRAINT "ActionRevision_actionId_fkey" FOREIGN KEY ("actionId") REFERENCES "Action"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ApprovalDecision" ADD CONSTRAINT "ApprovalDecision_actionId_fkey" FOREIGN KEY ("actionId") REFERENCES "Action"("id") ON DELETE CASCADE ON UPDATE CASCADE;
