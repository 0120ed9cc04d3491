-- AlterTable
ALTER TABLE "Action" DROP COLUMN "decidedById",
ADD COLUMN     "approvalExpiresAt" TIMESTAMPTZ(3),
ADD COLUMN     "decidedBy" TEXT;

-- AlterTable
ALTER TABLE "ApprovalToken" ADD COLUMN     "codeAttempts" INTEGER NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "Action_status_approvalExpiresAt_idx" ON "Action"("status", "approvalExpiresAt");
