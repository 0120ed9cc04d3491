-- AlterTable
ALTER TABLE "Receipt" ADD COLUMN     "statement" TEXT;
