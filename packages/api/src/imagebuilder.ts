/** Image-builder service of a cloud IDE (proto package `builder`): service `ImageBuilder`, an example of a custom build server. */
export * from './gen/image-builder-api/imgbuilder.js';
