-- AlterTable
ALTER TABLE "Execution" ADD COLUMN     "waitKey" TEXT;

-- CreateIndex
CREATE INDEX "Execution_waitKey_idx" ON "Execution"("waitKey");
